package model

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func TestJobSpecMarshalJSONRoundTrips(t *testing.T) {
	id := uuid.MustParse("0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11")
	sum := strings.Repeat("ab", 32)
	objectStore := SourceRef{Kind: SourceObjectStore, Bucket: "jerichoci-sources", Object: "sha256-" + sum + ".tar.gz", SHA256: sum}
	tests := []struct {
		name string
		spec JobSpec
		want string // the encoding
	}{
		{"minimal target on a host path",
			JobSpec{SchemaVersion: 1, JobID: id, Target: "demo-pass", Source: SourceRef{Kind: SourceHostPath, Path: "/srv/ci/src"}},
			`{"schema_version":1,"job_id":"0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11","target":"demo-pass","source":{"kind":"host_path","path":"/srv/ci/src"}}`},
		{"every field",
			JobSpec{SchemaVersion: 1, JobID: id, Lane: "check-pika-rust", Source: objectStore,
				Runtime: &RuntimeConfig{Kind: RuntimeIncus, Incus: &IncusRuntime{GuestRole: RolePikaciRunner, InstanceType: InstanceContainer}},
				GitHead: strings.Repeat("4e", 20), ChangedFiles: []string{"rust/src/lib.rs"}, Requester: "forge <ci> & co"},
			`{"schema_version":1,"job_id":"0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11","lane":"check-pika-rust","source":{"kind":"object_store","bucket":"jerichoci-sources","object":"sha256-` + sum + `.tar.gz","sha256":"` + sum + `"},"runtime":{"kind":"incus","incus":{"guest_role":"pikaci-runner","instance_type":"container"}},"git_head":"` + strings.Repeat("4e", 20) + `","changed_files":["rust/src/lib.rs"],"requester":"forge <ci> & co"}`},
		{"an empty change list is kept: git saw no change",
			JobSpec{SchemaVersion: 1, JobID: id, Target: "demo-pass", Source: objectStore, ChangedFiles: []string{}},
			`{"schema_version":1,"job_id":"0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11","target":"demo-pass","source":{"kind":"object_store","bucket":"jerichoci-sources","object":"sha256-` + sum + `.tar.gz","sha256":"` + sum + `"},"changed_files":[]}`},
		{"an incus runtime without a role",
			JobSpec{SchemaVersion: 1, JobID: id, Target: "demo-pass", Source: objectStore,
				Runtime: &RuntimeConfig{Kind: RuntimeIncus, Incus: &IncusRuntime{}}},
			`{"schema_version":1,"job_id":"0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11","target":"demo-pass","source":{"kind":"object_store","bucket":"jerichoci-sources","object":"sha256-` + sum + `.tar.gz","sha256":"` + sum + `"},"runtime":{"kind":"incus","incus":{}}}`},
		{"a host process runtime",
			JobSpec{SchemaVersion: 1, JobID: id, Target: "demo-pass", Source: objectStore, Runtime: &RuntimeConfig{Kind: RuntimeHostProcess}},
			`{"schema_version":1,"job_id":"0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11","target":"demo-pass","source":{"kind":"object_store","bucket":"jerichoci-sources","object":"sha256-` + sum + `.tar.gz","sha256":"` + sum + `"},"runtime":{"kind":"host_process"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.spec.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("MarshalJSON:\n got: %s\nwant: %s", b, tc.want)
			}
			got, err := ParseJobSpec(b)
			if err != nil {
				t.Fatalf("ParseJobSpec(%s): %v", b, err)
			}
			if !reflect.DeepEqual(got, tc.spec) {
				t.Errorf("round trip:\n got: %+v\nwant: %+v", got, tc.spec)
			}
			// json.Marshal uses it too (and may only escape HTML).
			viaJSON, err := json.Marshal(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if again, err := ParseJobSpec(viaJSON); err != nil || !reflect.DeepEqual(again, tc.spec) {
				t.Errorf("json.Marshal round trip: %+v, %v", again, err)
			}
		})
	}
}

func TestJobSpecMarshalJSONLeavesBadValuesToParseJobSpec(t *testing.T) {
	spec := JobSpec{SchemaVersion: 1, JobID: uuid.New(), Target: "demo pass", Source: SourceRef{Kind: SourceHostPath, Path: "src"},
		Runtime: &RuntimeConfig{Kind: RuntimeIncus, Incus: &IncusRuntime{GuestRole: "bogus"}}}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatalf("MarshalJSON of a bad spec = %v, want the bad values written", err)
	}
	_, err = ParseJobSpec(b)
	if err == nil {
		t.Fatalf("ParseJobSpec(%s) succeeded", b)
	}
	for _, field := range []string{"`target`", "`source.path`", "`runtime.incus.guest_role`"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("ParseJobSpec error %q does not name %s", err, field)
		}
	}
}
