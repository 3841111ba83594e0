package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"jerichoci/internal/names"
	"jerichoci/internal/wording"
)

// JobSpecVersion is the only job spec schema version this build reads.
const JobSpecVersion = 1

// JobSpec is the payload an orchestrator publishes to have one lane or
// target run. docs/PROTOCOL.md documents it.
type JobSpec struct {
	SchemaVersion int            `json:"schema_version"`
	JobID         uuid.UUID      `json:"job_id"`
	Lane          string         `json:"lane,omitempty"`   // a lane title, e.g. check-pika-rust
	Target        string         `json:"target,omitempty"` // or a target id
	Source        SourceRef      `json:"source"`
	Runtime       *RuntimeConfig `json:"runtime,omitempty"` // nil: the catalog's runtime
	GitHead       string         `json:"git_head,omitempty"`
	ChangedFiles  []string       `json:"changed_files,omitempty"`
	Requester     string         `json:"requester,omitempty"`
	Group         *JobGroup      `json:"group,omitempty"` // the push it belongs to
}

// SourceKind says where a job's source snapshot is.
type SourceKind string

// Source kinds.
const (
	SourceObjectStore SourceKind = "object_store"
	SourceHostPath    SourceKind = "host_path"
)

// SourceRef points at the source tree: a tarball in a JetStream object store
// (content-addressed) or a directory on the worker's host.
type SourceRef struct {
	Kind   SourceKind `json:"kind"`
	Bucket string     `json:"bucket,omitempty"` // object_store
	Object string     `json:"object,omitempty"` // object_store
	SHA256 string     `json:"sha256,omitempty"` // object_store: hex digest of the object
	Path   string     `json:"path,omitempty"`   // host_path: absolute directory
}

// jobSpecJSON is the wire form of JobSpec: what ParseJobSpec reads.
type jobSpecJSON struct {
	SchemaVersion int          `json:"schema_version"`
	JobID         string       `json:"job_id"`
	Lane          string       `json:"lane,omitempty"`
	Target        string       `json:"target,omitempty"`
	Source        SourceRef    `json:"source"`
	Runtime       *runtimeJSON `json:"runtime,omitempty"`
	GitHead       string       `json:"git_head,omitempty"`
	ChangedFiles  *[]string    `json:"changed_files,omitempty"`
	Requester     string       `json:"requester,omitempty"`
	Group         *JobGroup    `json:"group,omitempty"`
}

type runtimeJSON struct {
	Kind  RuntimeKind       `json:"kind"`
	Incus *incusRuntimeJSON `json:"incus,omitempty"`
}

type incusRuntimeJSON struct {
	GuestRole    string       `json:"guest_role,omitempty"` // not IncusGuestRole: its MarshalJSON refuses ""
	InstanceType InstanceType `json:"instance_type,omitempty"`
}

// MarshalJSON writes the spec as ParseJobSpec reads it, without HTML
// escaping. changed_files is written whenever it is non-nil: an empty list
// (git saw no change) is not the same as no list (no change detection). An
// unset guest role or instance type is left out; a bad value is written
// as it is, for ParseJobSpec to name.
func (s JobSpec) MarshalJSON() ([]byte, error) {
	v := jobSpecJSON{SchemaVersion: s.SchemaVersion, JobID: s.JobID.String(), Lane: s.Lane, Target: s.Target,
		Source: s.Source, GitHead: s.GitHead, Requester: s.Requester, Group: s.Group}
	if s.ChangedFiles != nil {
		v.ChangedFiles = &s.ChangedFiles
	}
	if s.Runtime != nil {
		v.Runtime = &runtimeJSON{Kind: s.Runtime.Kind}
		if in := s.Runtime.Incus; in != nil {
			v.Runtime.Incus = &incusRuntimeJSON{GuestRole: string(in.GuestRole), InstanceType: in.InstanceType}
		}
	}
	return marshalNoEscape(v)
}

// Name returns the lane title or target id the spec asks for.
func (s JobSpec) Name() string {
	if s.Lane != "" {
		return s.Lane
	}
	return s.Target
}

// ErrInvalidSpec is wrapped by every job spec decoding error: such a message
// can never succeed, so a queue terminates it.
var ErrInvalidSpec = errors.New("invalid job spec")

// InvalidSpecError lists every problem found in one job spec.
type InvalidSpecError struct{ Problems []error }

func (e *InvalidSpecError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Error()
	}
	return "invalid job spec: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalidSpec) true.
func (e *InvalidSpecError) Is(target error) bool { return target == ErrInvalidSpec }

var (
	hexPattern    = regexp.MustCompile(`^[0-9a-f]+$`)
	bucketPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// ParseJobSpec decodes and validates a job spec strictly: unknown fields,
// wrong types, missing required fields and bad values are each reported with
// the field, the value and what was expected, all at once.
func ParseJobSpec(b []byte) (JobSpec, error) {
	var errs []error
	o := specObject(b, "a JSON object (a job spec)", &errs)
	if o == nil {
		return JobSpec{}, &InvalidSpecError{Problems: errs}
	}
	var s JobSpec
	if v, ok := o.Uint("schema_version", true, "1"); ok {
		if v != JobSpecVersion {
			o.Fail("schema_version", []byte(strconv.FormatUint(v, 10)), "1")
		}
		s.SchemaVersion = int(v)
	}
	if id, ok := o.Str("job_id", true, "a UUID string such as \"0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11\""); ok {
		if u, err := ParseJobID(id); err != nil {
			o.Fail("job_id", quoteJSON(id), "a lowercase UUID string of 36 characters")
		} else {
			s.JobID = u
		}
	}
	nameExp := "a lane title or target id of letters, digits, '.', '_' or '-'"
	s.Lane, _ = o.Str("lane", false, nameExp)
	s.Target, _ = o.Str("target", false, nameExp)
	switch {
	case o.Has("lane") && o.Has("target"):
		errs = append(errs, &FieldError{Field: "lane", Value: quoteStr(s.Lane), Expected: "either `lane` or `target`, not both", Problem: "invalid"})
	case !o.Has("lane") && !o.Has("target"):
		errs = append(errs, &FieldError{Field: "lane", Expected: "`lane` (a lane title) or `target` (a target id)", Problem: "missing"})
	}
	for _, f := range []struct{ field, v string }{{"lane", s.Lane}, {"target", s.Target}} {
		if o.Has(f.field) && !names.Valid(f.v) {
			o.Fail(f.field, quoteJSON(f.v), nameExp)
		}
	}
	if src := specSub(o, "source", true, "an object with `kind` \"object_store\" or \"host_path\""); src != nil {
		s.Source = parseSource(src)
	}
	if rt := specSub(o, "runtime", false, "an object with `kind` \"incus\" or \"host_process\""); rt != nil {
		s.Runtime = parseRuntime(rt)
	}
	if h, ok := o.Str("git_head", false, "a 40- or 64-character lowercase hex commit id"); ok {
		if (len(h) != 40 && len(h) != 64) || !hexPattern.MatchString(h) {
			o.Fail("git_head", quoteJSON(h), "a 40- or 64-character lowercase hex commit id")
		}
		s.GitHead = h
	}
	var files []string
	if o.Decode("changed_files", false, "an array of relative file paths", &files) {
		for i, f := range files {
			if f == "" || path.IsAbs(f) || f != path.Clean(f) || f == ".." || strings.HasPrefix(f, "../") {
				errs = append(errs, &FieldError{Field: "changed_files[" + strconv.Itoa(i) + "]", Value: quoteStr(f),
					Expected: "a clean relative path inside the source tree", Problem: "invalid"})
			}
		}
		s.ChangedFiles = files
	}
	if r, ok := o.Str("requester", false, "a string naming who asked for the run"); ok {
		if strings.TrimSpace(r) == "" || len(r) > 256 {
			o.Fail("requester", quoteJSON(r), "a non-empty string of at most 256 bytes")
		}
		s.Requester = r
	}
	if g := specSub(o, "group", false, "an object with `id`, optional `lanes` and optional `job_ids`"); g != nil {
		s.Group = parseGroup(g)
		if !g.Failed("job_ids") && !o.Failed("job_id") {
			checkGroupJob(o, s.Group, s.JobID.String(), s.Name())
		}
	}
	specDone(o)
	if len(errs) > 0 {
		return JobSpec{}, &InvalidSpecError{Problems: errs}
	}
	return s, nil
}

func parseSource(o *StrictObject) SourceRef {
	var r SourceRef
	kind, _ := o.Str("kind", true, "\"object_store\" or \"host_path\"")
	r.Kind = SourceKind(kind)
	switch r.Kind {
	case SourceObjectStore:
		bucketExp := "a JetStream object store bucket name (letters, digits, '_' or '-')"
		if b, ok := o.Str("bucket", true, bucketExp); ok {
			if !bucketPattern.MatchString(b) {
				o.Fail("bucket", quoteJSON(b), bucketExp)
			}
			r.Bucket = b
		}
		if n, ok := o.Str("object", true, "a non-empty object name"); ok {
			if strings.TrimSpace(n) == "" {
				o.Fail("object", quoteJSON(n), "a non-empty object name")
			}
			r.Object = n
		}
		if d, ok := o.Str("sha256", true, "the 64-character lowercase hex SHA-256 of the object"); ok {
			if len(d) != 64 || !hexPattern.MatchString(d) {
				o.Fail("sha256", quoteJSON(d), "the 64-character lowercase hex SHA-256 of the object")
			}
			r.SHA256 = d
		}
	case SourceHostPath:
		if p, ok := o.Str("path", true, "an absolute directory path on the worker's host"); ok {
			if !path.IsAbs(p) {
				o.Fail("path", quoteJSON(p), "an absolute directory path on the worker's host")
			}
			r.Path = p
		}
	default:
		if o.Has("kind") {
			o.Fail("kind", quoteJSON(kind), "\"object_store\" or \"host_path\"")
		}
	}
	specDone(o)
	return r
}

func parseRuntime(o *StrictObject) *RuntimeConfig {
	var r RuntimeConfig
	kind, _ := o.Str("kind", true, "\"incus\" or \"host_process\"")
	r.Kind = RuntimeKind(kind)
	switch r.Kind {
	case RuntimeIncus:
		if in := specSub(o, "incus", false, "an object with `guest_role` and `instance_type`"); in != nil {
			r.Incus = &IncusRuntime{}
			roleExp := "\"managed-openclaw\" or \"pikaci-runner\" (exact, not trimmed)"
			if v, ok := in.Str("guest_role", false, roleExp); ok {
				if role := IncusGuestRole(v); role.Valid() {
					r.Incus.GuestRole = role
				} else {
					in.Fail("guest_role", quoteJSON(v), roleExp)
				}
			}
			typeExp := "\"auto\", \"virtual-machine\" or \"container\""
			if v, ok := in.Str("instance_type", false, typeExp); ok {
				if t := InstanceType(v); t.Valid() {
					r.Incus.InstanceType = t
				} else {
					in.Fail("instance_type", quoteJSON(v), typeExp)
				}
			}
			specDone(in)
		}
	case RuntimeHostProcess:
		if o.Has("incus") {
			raw, _ := o.Raw("incus", false, "")
			o.Fail("incus", raw, "no `incus` object for kind \"host_process\"")
		}
	default:
		if o.Has("kind") {
			o.Fail("kind", quoteJSON(kind), "\"incus\" or \"host_process\"")
		}
	}
	specDone(o)
	return &r
}

func quoteStr(s string) string { return strconv.Quote(s) }

func quoteJSON(s string) []byte { return []byte(strconv.Quote(s)) }

// ParseJobID accepts a job id as the protocol spells it: a lowercase UUID
// of 36 characters.
func ParseJobID(s string) (uuid.UUID, error) {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 || s != strings.ToLower(s) {
		return uuid.UUID{}, fmt.Errorf("job id %q: expected a lowercase UUID of 36 characters such as \"0b6f6c1e-3c3a-4d7e-9a53-5f0a8f0e2b11\"", s)
	}
	return u, nil
}

// The job spec's problems, in the decoders' one wording (internal/wording).

// FieldError is one problem with one field of a decoded document.
type FieldError struct {
	Field    string // dotted path, e.g. "source.path"
	Value    string // the offending JSON value as written, "" when missing
	Expected string // what was expected
	Problem  string // "missing", "unknown", "invalid"
}

func (e *FieldError) Error() string {
	switch e.Problem {
	case "missing":
		return wording.Missing(e.Field, e.Expected)
	case "unknown":
		return wording.Unknown(e.Field, e.Value, e.Expected)
	}
	return wording.Invalid(e.Field, e.Expected, e.Value)
}

// specReport returns the report function of a job spec's objects: it
// appends each problem, worded, to errs.
func specReport(errs *[]error) func(StrictProblem) {
	return func(p StrictProblem) {
		var err error
		switch p.Kind {
		case StrictMissing:
			err = &FieldError{Field: p.Field, Expected: p.Expected, Problem: "missing"}
		case StrictInvalid:
			err = &FieldError{Field: p.Field, Value: wording.Value(p.Value), Expected: p.Expected, Problem: "invalid"}
		case StrictUnknown:
			err = &FieldError{Field: p.Field, Value: wording.Value(p.Value), Expected: wording.OneOf(p.Known), Problem: "unknown"}
		case StrictRepeated:
			err = errors.New(wording.Repeated(p.Field))
		default:
			err = errors.New(wording.About(p.Field, p.Msg))
		}
		*errs = append(*errs, err)
	}
}

// specObject starts decoding a job spec; nil when it is not an object or
// repeats a key (the problem is in errs).
func specObject(raw []byte, expected string, errs *[]error) *StrictObject {
	o, err := NewStrictObject(raw, specReport(errs))
	if err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			err = fmt.Errorf("expected %s, got invalid JSON (%v at byte %d)", expected, syn, syn.Offset)
		} else {
			err = fmt.Errorf("expected %s, got %s", expected, describeJSON(raw))
		}
		*errs = append(*errs, err)
		return nil
	}
	if r := o.Repeated(); len(r) > 0 {
		*errs = append(*errs, errors.New(wording.Repeated(r[0])))
		return nil
	}
	return o
}

// specSub returns an object field of a job spec; nil when absent, not an
// object, or repeating a key (the problem is reported).
func specSub(o *StrictObject, field string, required bool, expected string) *StrictObject {
	s := o.Sub(field, required, expected)
	if s != nil {
		if r := s.Repeated(); len(r) > 0 {
			s.FailRepeated(r[0])
			return nil
		}
	}
	return s
}

// specDone reports the fields of a job spec object nobody asked for, sorted.
func specDone(o *StrictObject) {
	unknown := o.Unknown()
	sort.Strings(unknown)
	for _, f := range unknown {
		o.FailUnknown(f)
	}
}
