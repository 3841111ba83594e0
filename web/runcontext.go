package web

// laneContext is what a run page says about the run's lane: why it
// failed, the push it belongs to and the other attempts of its job.
type laneContext struct {
	Why        *Why
	PushID     string
	PushNumber uint64
	Attempt    int // this run's place among its job's attempts, from 1
	Attempts   []attemptView
}

// attemptView is one attempt of a daemon job.
type attemptView struct {
	N       int
	RunID   string
	Status  string
	Why     *Why
	Current bool
}

// laneContext finds the run's job among the runs: its attempts and push.
func (s *Server) laneContext(e runEntry) laneContext {
	lc := laneContext{Why: whyRun(e.Rec, 0), Attempt: 1}
	if e.Job == nil {
		return lc
	}
	entries, err := s.loadRuns()
	if err != nil {
		return lc
	}
	for _, it := range collect(entries) {
		runs := []laneRun{}
		if it.Push != nil {
			runs = it.Push.Runs
		} else {
			runs = append(runs, *it.Run)
		}
		for _, l := range runs {
			if l.Key != e.Job.JobID {
				continue
			}
			if it.Push != nil {
				lc.PushID, lc.PushNumber = it.Push.ID, it.Push.Number
			}
			for i, a := range l.Attempts {
				av := attemptView{N: i + 1, RunID: a.ID, Current: a.ID == e.ID}
				if a.Err == nil {
					av.Status = string(a.Rec.Status)
					av.Why = whyRun(a.Rec, i)
				}
				if av.Current {
					lc.Attempt = i + 1
					lc.Why = whyRun(e.Rec, i)
				}
				lc.Attempts = append(lc.Attempts, av)
			}
			if len(lc.Attempts) < 2 {
				lc.Attempts = nil
			}
			return lc
		}
	}
	return lc
}

// logLine is a line of a log as the page shows it: Err marks the lines a
// program wrote to stderr.
type logLine struct {
	Text string
	Err  bool
}

// Lines splits the log into lines (each with its newline), marking those
// whose prefix tag names stderr, such as "[runner:stderr] ".
func (t logTail) Lines() []logLine {
	var out []logLine
	rest := t.Text
	for rest != "" {
		n := len(rest)
		for i := 0; i < len(rest); i++ {
			if rest[i] == '\n' {
				n = i + 1
				break
			}
		}
		line := rest[:n]
		rest = rest[n:]
		err := stderrLine(line)
		if k := len(out) - 1; k >= 0 && out[k].Err == err {
			out[k].Text += line
			continue
		}
		out = append(out, logLine{Text: line, Err: err})
	}
	return out
}

// stderrLine: the line starts with a tag "[…:stderr]".
func stderrLine(line string) bool {
	if len(line) == 0 || line[0] != '[' {
		return false
	}
	for i := 1; i < len(line) && i < 64; i++ {
		if line[i] == ']' {
			tag := line[1:i]
			return tag == "stderr" || len(tag) > 7 && tag[len(tag)-7:] == ":stderr"
		}
	}
	return false
}
