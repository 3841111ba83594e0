package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strconv"

	"go.uber.org/zap"

	"jerichoci/model"
)

const (
	defaultLimit = 100
	maxLimit     = 1000
)

// apiRuns is GET /api/runs?limit=N: {"runs":[RunSummary…]}, newest first.
func (s *Server) apiRuns(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err.Error())
		return
	}
	entries, err := s.loadRuns()
	if err != nil {
		s.cfg.Log.Error("list runs", zap.Error(err))
		jsonError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := struct {
		Runs []RunSummary `json:"runs"`
	}{Runs: []RunSummary{}}
	for i, e := range entries {
		if i == limit {
			break
		}
		out.Runs = append(out.Runs, s.summary(e))
	}
	writeJSON(w, http.StatusOK, out)
}

// limitParam is ?limit=, 1 to maxLimit, default defaultLimit.
func limitParam(r *http.Request) (int, error) {
	q := r.URL.Query()
	if !q.Has("limit") {
		return defaultLimit, nil
	}
	v := q.Get("limit")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxLimit {
		return 0, fmt.Errorf("query parameter `limit` %q: expected an integer from 1 to %d (default %d)", v, maxLimit, defaultLimit)
	}
	return n, nil
}

// apiRun is GET /api/runs/{run}: run.json as stored, byte for byte, when
// it decodes as a run record (else 500 saying why).
func (s *Server) apiRun(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("run")
	if !validName(id) {
		jsonError(w, http.StatusBadRequest, badRunID(id))
		return
	}
	// One read: the bytes served are the bytes checked.
	b, err := os.ReadFile(s.store.RunPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		jsonError(w, http.StatusNotFound, fmt.Sprintf("no run %s", id))
		return
	}
	if err != nil {
		s.cfg.Log.Error("read run record", zap.String("run_id", id), zap.Error(err))
		jsonError(w, http.StatusInternalServerError, fmt.Sprintf("read the record of run %s: %v", id, err))
		return
	}
	var rec model.RunRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		jsonError(w, http.StatusInternalServerError, fmt.Sprintf("runs/%s/run.json: %v", id, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
