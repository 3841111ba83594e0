package main

import (
	"sync"

	"jerichoci/internal/procid"
)

// thisProcess names this process in the config of every instance it
// creates (executor.ConfigProcess): host, boot, pid and start time, so
// that a reaper on this host can prove it gone even when its pid has been
// given to another process since (docs/RELIABILITY.md, "Instances of a
// dead process"). "" when /proc cannot tell (no such key is then set).
var thisProcess = sync.OnceValue(func() string {
	id, err := procid.Self()
	if err != nil {
		return ""
	}
	return id.String()
})
