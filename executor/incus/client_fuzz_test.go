package incus

// FuzzDecodeEnvelope fuzzes decodeEnvelope, the decoder of the REST
// response envelope every answer of the server goes through, with an
// *http.Response built in memory (fuzzed body and HTTP status; no server).
//
// It checks: no panic; a rejection is a nil envelope and an error naming
// the request ("GET /…") with a non-empty message and no fmt verb bug; an
// HTTP status >= 400 is never accepted, an accepted envelope is "sync" or
// "async", and an "error" envelope is a *StatusError; decoding the
// metadata of an accepted envelope (decodeMetadata, as for an operation)
// does not panic either; and an accepted envelope round-trips: encoded
// with its JSON tags and decoded again it is the same envelope. `go test
// -run Fuzz ./executor/incus` runs the seeds (testdata/fixtures/incus and
// testdata/fuzz/FuzzDecodeEnvelope) as plain tests; `make fuzz` fuzzes it
// (scripts/fuzz).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const fuzzPath = "/instances/fuzz"

// fuzzResponse builds the answer decodeEnvelope reads: status is mapped
// into 100..599.
func fuzzResponse(status int, body []byte) *http.Response {
	if status < 100 || status > 599 {
		status = 100 + (status%500+500)%500
	}
	return &http.Response{
		StatusCode: status,
		Status:     fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(bytes.NewReader(body)),
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "fixtures", "incus", "*.json"))
	if len(files) == 0 {
		f.Fatal("no envelope fixtures under testdata/fixtures/incus")
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(http.StatusOK))
		var env response
		if json.Unmarshal(b, &env) == nil {
			switch env.Type {
			case "error":
				f.Add(b, uint16(env.ErrorCode))
			case "async":
				f.Add(b, uint16(http.StatusAccepted))
			}
		}
	}
	f.Add([]byte(""), uint16(http.StatusNotFound))
	f.Add([]byte("<html>bad gateway</html>"), uint16(http.StatusBadGateway))
	f.Fuzz(func(t *testing.T, body []byte, status uint16) {
		resp := fuzzResponse(int(status), body)
		env, err := decodeEnvelope(http.MethodGet, fuzzPath, resp)
		if err != nil {
			if env != nil {
				t.Fatalf("rejected envelope comes with a value: %+v (%v)", env, err)
			}
			fuzzCheckEnvelopeErr(t, body, err)
			return
		}
		if env == nil {
			t.Fatalf("accepted %q (HTTP %d) without an envelope", body, resp.StatusCode)
		}
		if resp.StatusCode >= 400 || (env.Type != "sync" && env.Type != "async") {
			t.Fatalf("accepted a %q envelope with HTTP %d: %q", env.Type, resp.StatusCode, body)
		}
		var op Operation
		if err := decodeMetadata(http.MethodGet, fuzzPath, env, &op); err != nil {
			fuzzCheckEnvelopeErr(t, body, err)
		}
		// Round trip through the envelope's JSON tags.
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatalf("cannot encode the envelope decoded from %q: %v", body, err)
		}
		env2, err := decodeEnvelope(http.MethodGet, fuzzPath, fuzzResponse(resp.StatusCode, b))
		if err != nil {
			t.Fatalf("decodeEnvelope rejects %s (encoded from %q): %v", b, body, err)
		}
		if !reflect.DeepEqual(fuzzComparable(t, env), fuzzComparable(t, env2)) {
			t.Fatalf("round trip changed the envelope:\n got: %+v\nwant: %+v\nvia %s", env2, env, b)
		}
		if b2, err := json.Marshal(env2); err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("encoding not stable:\n%s\n%s\n(%v)", b, b2, err)
		}
	})
}

// fuzzComparable returns the envelope with its metadata decoded, so that
// spacing, escaping and an absent (nil) versus null value do not count.
func fuzzComparable(t *testing.T, env *response) any {
	t.Helper()
	e := *env
	var meta any
	if len(e.Metadata) > 0 {
		dec := json.NewDecoder(bytes.NewReader(e.Metadata))
		dec.UseNumber()
		if err := dec.Decode(&meta); err != nil {
			t.Fatalf("accepted metadata %q is not JSON: %v", e.Metadata, err)
		}
	}
	e.Metadata = nil
	return []any{e, meta}
}

// fuzzCheckEnvelopeErr fails unless err is a clear error about the
// request: non-empty, starting with the method and naming the path, with
// no fmt verb bug (a "%!" is allowed when the body has a '%', which the
// server's message and the body snippet repeat verbatim). A *StatusError
// carries a status.
func fuzzCheckEnvelopeErr(t *testing.T, body []byte, err error) {
	t.Helper()
	msg := err.Error()
	if !strings.HasPrefix(msg, http.MethodGet+" ") || !strings.Contains(msg, fuzzPath+":") {
		t.Fatalf("error %q does not name the request GET %s (body %q)", msg, fuzzPath, body)
	}
	percent := bytes.Contains(body, []byte("%")) || bytes.Contains(bytes.ToLower(body), []byte(`\u0025`))
	if strings.Contains(msg, "%!") && !percent {
		t.Fatalf("fmt verb bug in error message %q (body %q)", msg, body)
	}
	var se *StatusError
	if errors.As(err, &se) && se.Status == 0 {
		t.Fatalf("status error without a status: %q (body %q)", msg, body)
	}
	var env response
	if json.Unmarshal(body, &env) == nil && env.Type == "error" && !errors.As(err, &se) {
		t.Fatalf("error envelope %q not reported as a *StatusError: %v", body, err)
	}
}
