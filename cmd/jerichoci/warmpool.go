package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"jerichoci/executor"
)

// warmConfig is the warm pool's sizing knobs beside --warm (docs/INCUS.md,
// "The warm pool's size").
type warmConfig struct {
	// min is the floor kept ready when nothing comes; -1: --warm's value.
	min int
	// max is the most kept ready or being made per image; -1: the larger
	// of the floor and twice the concurrency.
	max int
	// parallel is the incusd budget: pool creates and the jobs' teardowns
	// running at once.
	parallel int
}

func defaultWarmConfig() warmConfig { return warmConfig{min: -1, max: -1, parallel: 2} }

func (w *warmConfig) flags(fs *flag.FlagSet) {
	fs.IntVar(&w.min, "warm-min", w.min, "warm instances kept ready per image when no job comes (`N`; env JERICHOCI_WARM_MIN; -1: --warm's value)")
	fs.IntVar(&w.max, "warm-max", w.max, "most warm instances per image, ready or being made, when jobs wait in the queue or came within the last minute (`N`; env JERICHOCI_WARM_MAX; -1: twice the concurrency, at least --warm-min; bounded by the host's process slots)")
	fs.IntVar(&w.parallel, "warm-parallel", w.parallel, "incusd work the warm pool may have in flight: its creates plus the jobs' teardowns running (`N`; env JERICHOCI_WARM_PARALLEL)")
}

func (w *warmConfig) fromEnv(intVar func(name string, dst *int)) {
	intVar("JERICHOCI_WARM_MIN", &w.min)
	intVar("JERICHOCI_WARM_MAX", &w.max)
	intVar("JERICHOCI_WARM_PARALLEL", &w.parallel)
}

func (w warmConfig) validate() []error {
	var errs []error
	if w.min < -1 {
		errs = append(errs, fmt.Errorf("--warm-min %d (env JERICHOCI_WARM_MIN): expected a number >= 0 (or -1 for --warm's value)", w.min))
	}
	if w.max < -1 {
		errs = append(errs, fmt.Errorf("--warm-max %d (env JERICHOCI_WARM_MAX): expected a number >= 0 (or -1 for twice the concurrency)", w.max))
	}
	if w.min >= 0 && w.max >= 0 && w.max < w.min {
		errs = append(errs, fmt.Errorf("--warm-max %d (env JERICHOCI_WARM_MAX): expected at least --warm-min %d", w.max, w.min))
	}
	if w.parallel < 1 {
		errs = append(errs, fmt.Errorf("--warm-parallel %d (env JERICHOCI_WARM_PARALLEL): expected a number >= 1", w.parallel))
	}
	return errs
}

// sizing resolves the knobs for a pool of --warm warm (already resolved:
// > 0) under concurrency workers. hostMax bounds the pool by the host's
// process slots: what kernel.pid_max (read from pidMaxFile) leaves after
// the workers' guests, at --guest-max-processes each; 0 when unbounded.
func (w warmConfig) sizing(warm, concurrency, maxProcesses int, pidMaxFile string) executor.PoolSizing {
	s := executor.PoolSizing{Min: warm, Budget: w.parallel}
	if w.min >= 0 {
		s.Min = w.min
	}
	s.Max = max(s.Min, 2*concurrency)
	if w.max >= 0 {
		s.Max = max(w.max, s.Min)
	}
	if maxProcesses > 0 {
		if b, err := os.ReadFile(pidMaxFile); err == nil {
			if pidMax, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pidMax > 0 {
				s.HostMax = max(pidMax/maxProcesses-concurrency-1, 1)
			}
		}
	}
	return s
}
