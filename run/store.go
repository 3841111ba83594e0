package run

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"jerichoci/internal/atomicfile"
	"jerichoci/model"
)

// Store is the state root's runs/ directory: the only code that knows
// its layout (docs/CONTRACTS.md, "State layout"):
//
//	runs/<run_id>/run.json
//	runs/<run_id>/snapshot/ (its own pikaci-snapshot.json inside)
//	runs/<run_id>/jobs/<job>/status.json, host.log, artifacts/guest.log
//	runs/<run_id>/<name>        files of other writers (the daemon's JobFile)
//
// Every record of a run is written through it: the Runner's and the
// daemon's.
type Store struct {
	Root string // the state root
}

// NewStore returns the store of a state root.
func NewStore(stateRoot string) *Store { return &Store{Root: stateRoot} }

// RunsDir is runs/.
func (s *Store) RunsDir() string { return filepath.Join(s.Root, "runs") }

// RunDir is runs/<run_id>.
func (s *Store) RunDir(runID string) string { return filepath.Join(s.RunsDir(), runID) }

// RunPath is runs/<run_id>/run.json.
func (s *Store) RunPath(runID string) string { return filepath.Join(s.RunDir(runID), "run.json") }

// SnapshotDir is runs/<run_id>/snapshot.
func (s *Store) SnapshotDir(runID string) string { return filepath.Join(s.RunDir(runID), "snapshot") }

// JobDir is runs/<run_id>/jobs/<job>.
func (s *Store) JobDir(runID, job string) string { return filepath.Join(s.RunDir(runID), "jobs", job) }

// HostLogPath is a job's host.log.
func (s *Store) HostLogPath(runID, job string) string {
	return filepath.Join(s.JobDir(runID, job), "host.log")
}

// GuestLogPath is a job's artifacts/guest.log.
func (s *Store) GuestLogPath(runID, job string) string {
	return filepath.Join(s.JobDir(runID, job), "artifacts", "guest.log")
}

// CreateRun makes runs/<run_id>/jobs.
func (s *Store) CreateRun(runID string) error {
	if err := os.MkdirAll(filepath.Join(s.RunDir(runID), "jobs"), 0o755); err != nil {
		return fmt.Errorf("create run directory %s: %w", runID, err)
	}
	return nil
}

// CreateJob makes a job's directory with its artifacts/.
func (s *Store) CreateJob(runID, job string) error {
	if err := os.MkdirAll(filepath.Join(s.JobDir(runID, job), "artifacts"), 0o755); err != nil {
		return fmt.Errorf("create job directory %s/%s: %w", runID, job, err)
	}
	return nil
}

// WriteRun writes run.json atomically.
func (s *Store) WriteRun(rec model.RunRecord) error {
	b, err := model.EncodeFile(rec)
	if err != nil {
		return fmt.Errorf("encode run record %s: %w", rec.RunID, err)
	}
	return atomicfile.WriteFile(s.RunPath(rec.RunID), b, 0o644)
}

// WriteJob writes a job's status.json atomically.
func (s *Store) WriteJob(runID string, j model.JobRecord) error {
	b, err := model.EncodeFile(j)
	if err != nil {
		return fmt.Errorf("encode job record %s: %w", j.ID, err)
	}
	return atomicfile.WriteFile(filepath.Join(s.JobDir(runID, j.ID), "status.json"), b, 0o644)
}

// WriteRunFile writes v as runs/<run_id>/<name> (JSON), creating the run
// directory: a file of another writer, such as the daemon's JobFile.
func (s *Store) WriteRunFile(runID, name string, v any) error {
	if err := s.CreateRun(runID); err != nil {
		return err
	}
	b, err := model.EncodeFile(v)
	if err != nil {
		return fmt.Errorf("encode %s of run %s: %w", name, runID, err)
	}
	return atomicfile.WriteFile(filepath.Join(s.RunDir(runID), name), b, 0o644)
}

// ReadRunFile reads runs/<run_id>/<name> (JSON) into v.
func (s *Store) ReadRunFile(runID, name string, v any) error {
	b, err := os.ReadFile(filepath.Join(s.RunDir(runID), name))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// ListRuns is ListRuns of the store's state root.
func (s *Store) ListRuns() ([]model.RunRecord, error) { return ListRuns(s.Root) }

// LoadRun is LoadRun of the store's state root.
func (s *Store) LoadRun(runID string) (model.RunRecord, error) { return LoadRun(s.Root, runID) }

// GC is GCExcept of the store's state root.
func (s *Store) GC(keep int, inUse func(runID string) bool) ([]string, error) {
	return GCExcept(s.Root, keep, inUse)
}

// ListRuns reads every runs/<id>/run.json under stateRoot, newest first by
// the created_at string. Directories without run.json are ignored; a
// run.json that does not decode is reported in errs and left out.
func ListRuns(stateRoot string) (runs []model.RunRecord, errs error) {
	ids, err := NewStore(stateRoot).RunIDs()
	if err != nil {
		return nil, err
	}
	var problems []error
	for _, id := range ids {
		r, err := LoadRun(stateRoot, id)
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

// RunIDs lists the directories under runs/, in name order; none when
// runs/ does not exist. A directory need not hold a run.json.
func (s *Store) RunIDs() ([]string, error) {
	entries, err := os.ReadDir(s.RunsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// LoadRun reads one run record.
func LoadRun(stateRoot, runID string) (model.RunRecord, error) {
	var r model.RunRecord
	if runID == "" || filepath.Base(runID) != runID || runID == "." || runID == ".." {
		return r, fmt.Errorf("run id %q: expected a directory name under runs/", runID)
	}
	path := NewStore(stateRoot).RunPath(runID)
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
	entries, err := os.ReadDir(NewStore(stateRoot).RunsDir())
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
		if err := os.RemoveAll(NewStore(stateRoot).RunDir(n)); err != nil {
			return removed, fmt.Errorf("gc: remove run %s: %w", n, err)
		}
		removed = append(removed, n)
	}
	return removed, nil
}
