package protocol

// DropKeyNotices makes w miss every later change of its job's key, as a
// watch whose notice was lost (a reconnect, or a change published before
// the stream stored it): only its own re-reads can find the record.
func DropKeyNotices(w *Watch) {
	_ = w.subs[1].Unsubscribe()
}
