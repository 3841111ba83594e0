package daemon

import (
	"reflect"
	"testing"

	"github.com/google/uuid"

	"jerichoci/model"
	"jerichoci/run/protocol"
)

// TestJobFileCarriesTheGroup: the spec's group and lane title reach the
// run's jerichoci-job.json, whether the job ran or never could, so the
// status page can show the push.
func TestJobFileCarriesTheGroup(t *testing.T) {
	group := &model.JobGroup{ID: "push-4eef499-1", Lanes: []string{"demo-pass", "nope"}}
	tests := []struct {
		name   string
		field  string // "target" or "lane"
		job    string
		status model.RunStatus
		lane   string // the job file's lane
	}{
		{"ran", "target", "demo-pass", model.StatusPassed, ""},
		{"never ran", "lane", "nope", model.StatusFailed, "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := uuid.New()
			data, err := encodeJSON(map[string]any{"schema_version": 1, "job_id": id.String(), tc.field: tc.job,
				"source": map[string]string{"kind": "host_path", "path": h.src}, "group": group})
			if err != nil {
				t.Fatal(err)
			}
			m := newMsg(data, 1, 7)
			m.hdr.Set("Nats-Msg-Id", id.String())
			h.process(t, m)
			res := h.results.result(t, id.String())
			if res == nil || res.Status != tc.status {
				t.Fatalf("result = %+v, want %s", res, tc.status)
			}
			var jf protocol.JobFile
			if err := h.d.Runner.Store().ReadRunFile(res.RunID, protocol.JobFileName, &jf); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(jf.Group, group) || jf.Lane != tc.lane || jf.StreamSeq != 7 {
				t.Errorf("job file = %+v (group %+v), want group %+v, lane %q, stream_seq 7", jf, jf.Group, group, tc.lane)
			}
		})
	}
}
