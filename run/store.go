package run

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"jerichoci/model"
)

// ListRuns reads every runs/<id>/run.json under stateRoot, newest first by
// the created_at string. Directories without run.json are ignored; a
// run.json that does not decode is reported in errs and left out.
func ListRuns(stateRoot string) (runs []model.RunRecord, errs error) {
	entries, err := os.ReadDir(filepath.Join(stateRoot, "runs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var problems []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		r, err := LoadRun(stateRoot, e.Name())
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			problems = append(problems, err)
			continue
		}
		runs = append(runs, r)
	}
	sort.SliceStable(runs, func(i, j int) bool {
		return runs[i].CreatedAt.String() > runs[j].CreatedAt.String()
	})
	return runs, errors.Join(problems...)
}

// LoadRun reads one run record.
func LoadRun(stateRoot, runID string) (model.RunRecord, error) {
	var r model.RunRecord
	if runID == "" || filepath.Base(runID) != runID || runID == "." || runID == ".." {
		return r, fmt.Errorf("run id %q: expected a directory name under runs/", runID)
	}
	path := filepath.Join(stateRoot, "runs", runID, "run.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// GC keeps the newest keep run directories (by name, descending) and
// removes the rest, with or without run.json, as the original does. It
// returns the removed ids in removal order.
func GC(stateRoot string, keep int) ([]string, error) {
	return GCExcept(stateRoot, keep, nil)
}

// GCExcept is GC that never removes a run for which inUse says true (such
// a run still counts as one of the kept ones).
func GCExcept(stateRoot string, keep int, inUse func(runID string) bool) ([]string, error) {
	if keep < 0 {
		return nil, fmt.Errorf("gc: --keep-runs must be >= 0, got %d", keep)
	}
	entries, err := os.ReadDir(filepath.Join(stateRoot, "runs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names)))
	if len(names) <= keep {
		return nil, nil
	}
	var removed []string
	for _, n := range names[keep:] {
		if inUse != nil && inUse(n) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(stateRoot, "runs", n)); err != nil {
			return removed, fmt.Errorf("gc: remove run %s: %w", n, err)
		}
		removed = append(removed, n)
	}
	return removed, nil
}
