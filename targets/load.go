package targets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"jerichoci/internal/names"
	"jerichoci/internal/wording"
	"jerichoci/model"
)

// SchemaVersion is the only catalog file schema this build reads.
const SchemaVersion = 1

// DefaultFile is the project-local catalog file the CLI reads from the
// working directory when no other is named.
const DefaultFile = "jerichoci.lanes.json"

// FieldError is one problem in a catalog file: the file, the entry (for
// example `targets[2] ("demo-pass"): jobs[0] ("echo")`, empty at top level),
// the field (dotted, e.g. "runtime.incus.guest_role", empty for the entry
// itself) and what is wrong, in the decoders' one wording
// (internal/wording): Msg names the field when there is one, as in
// "field `timeout_secs`: must be > 0, got 0".
type FieldError struct {
	File  string
	Entry string
	Field string
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Entry == "" {
		return e.File + ": " + e.Msg
	}
	return e.File + ": " + e.Entry + ": " + e.Msg
}

// Load reads and parses one catalog file (see Parse). It returns only that
// file's targets; merge them over Builtin() with Merge, or use LoadProject.
func Load(file string) (*Catalog, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	return Parse(file, data)
}

// LoadProject loads a project's catalog file and returns the catalog it
// asks for: the built-in catalog with the file's targets merged over it, or
// the file's targets alone when it says `"include_builtin": false`.
func LoadProject(file string) (*Catalog, error) {
	local, err := Load(file)
	if err != nil {
		return nil, err
	}
	if !local.IncludesBuiltin() {
		return local, nil
	}
	return Builtin().Merge(local)
}

// Parse decodes a catalog file strictly. The shape (docs/CATALOG.md documents
// it; catalog/pika.json is a complete example):
//
//	{
//	  "schema_version": 1,                 // required, must be 1
//	  "about": "free text",                // optional
//	  "include_builtin": true,             // optional, default true (see LoadProject)
//	  "lane_definition_paths": ["ci.json"],// optional: changing one selects every lane of this file
//	  "targets": [{                        // required, at least one
//	    "id": "demo",                      // required, unique: letters, digits, '.', '_', '-'
//	    "description": "…",
//	    "lane": "check-demo",              // lane title; required with a trigger, unique
//	    "trigger": "branch",               // "branch" or "nightly"; omit for on-demand targets
//	    "concurrency_group": "demo",       // optional, only with a trigger
//	    "filters": ["src/**", "go.mod"],   // optional path patterns
//	    "jobs": [{                         // required, at least one, ids unique
//	      "id": "test", "description": "…",
//	      "timeout_secs": 600,             // required, > 0
//	      "command": {"kind": "shell", "command": "make test"},
//	      "runtime": {"kind": "incus", "incus": {"guest_role": "pikaci-runner"}},
//	      "placement": "remote_ssh", "executor": "remote_linux_vm",   // optional, implied by runtime
//	      "staged": false, "staged_linux": {…},                        // staged implied by command kind
//	      "writable": false, "run_as_root": false,                     // run_as_root implied by kind
//	      "secret_env": ["API_TOKEN"]      // optional: passed from the worker's environment, masked in logs
//	    }]
//	  }]
//	}
//
// Unknown fields, wrong types, repeated keys, missing or bad values and
// inconsistent combinations are all reported at once (errors.Join of
// *FieldError), each naming name (the file), the entry and the field.
func Parse(name string, data []byte) (*Catalog, error) {
	p := &parser{file: name}
	var bad *model.JSONError
	if errors.As(model.CheckJSON(data), &bad) {
		msg := fmt.Sprintf("invalid JSON: %v", bad.Err)
		if bad.Line > 0 {
			msg = fmt.Sprintf("invalid JSON at line %d, column %d: %v", bad.Line, bad.Column, bad.Err)
		}
		return nil, &FieldError{File: name, Msg: msg}
	}
	top := p.object("", data, "a JSON object with `schema_version` and `targets`")
	if top == nil {
		return nil, errors.Join(p.errs...)
	}
	if raw, ok := top.Raw("schema_version", false, ""); ok {
		var v int
		if json.Unmarshal(raw, &v) != nil || v != SchemaVersion {
			top.Failf("schema_version", "must be %d, got %s", SchemaVersion, wording.Value(raw))
		}
	} else {
		top.FailMissing("schema_version", strconv.Itoa(SchemaVersion))
	}
	top.Str("about", false, "a string")
	includeBuiltin := true
	if v, ok := top.Bool("include_builtin", false, "true or false"); ok {
		includeBuiltin = v
	}
	defPaths, ok := top.Strings("lane_definition_paths", false, "an array of path patterns")
	for i, d := range defPaths {
		if msg := patternProblem(d); ok && msg != "" {
			top.Failf(fmt.Sprintf("lane_definition_paths[%d]", i), "%s", msg)
		}
	}
	var ts []Target
	if raws, ok := top.Array("targets", true, "a non-empty array of targets"); ok {
		if len(raws) == 0 {
			top.Failf("targets", "must hold at least one target")
		}
		ids, lanes := map[string]int{}, map[string]int{}
		for i, raw := range raws {
			// Duplicates are checked even among invalid targets.
			t, ok := p.target(i, raw)
			entry := fmt.Sprintf("targets[%d] (%q)", i, t.ID)
			if j, dup := ids[t.ID]; dup && t.ID != "" {
				p.add(entry, "id", "duplicate target id; targets[%d] has it too", j)
				ok = false
			} else if t.ID != "" {
				ids[t.ID] = i
			}
			if j, dup := lanes[t.Lane]; dup && t.Lane != "" {
				p.add(entry, "lane", "duplicate lane title %q; targets[%d] has it too", t.Lane, j)
				ok = false
			} else if t.Lane != "" {
				lanes[t.Lane] = i
			}
			if !ok {
				continue
			}
			t.Source = name
			t.LaneDefinitionPaths = slices.Clone(defPaths)
			ts = append(ts, t)
		}
	}
	finish(top)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	c := newCatalog(name, ts)
	c.includeBuiltin = includeBuiltin
	return c, nil
}

const nameExpected = names.Expected

func (p *parser) target(i int, raw json.RawMessage) (Target, bool) {
	entry := fmt.Sprintf("targets[%d]", i)
	if id := peekID(raw); id != "" {
		entry += fmt.Sprintf(" (%q)", id)
	}
	o := p.object(entry, raw, "a target object")
	if o == nil {
		return Target{}, false
	}
	before := len(p.errs)
	var t Target
	t.ID, _ = nameField(o, "id", true)
	t.Description, _ = o.Str("description", false, "a string")
	if s, ok := o.Str("trigger", false, `"branch" or "nightly"`); ok {
		switch Trigger(s) {
		case TriggerBranch, TriggerNightly:
			t.Trigger = Trigger(s)
		default:
			o.Failf("trigger", `must be "branch" or "nightly" (omit it for a target run only on demand), got %q`, s)
		}
	}
	if s, ok := nameField(o, "lane", false); ok {
		t.Lane = s
		if t.Trigger == TriggerNone && !o.Failed("trigger") {
			o.Failf("lane", "a lane title needs a `trigger` (\"branch\" or \"nightly\")")
		}
	} else if t.Trigger != TriggerNone && !o.Failed("lane") {
		o.Failf("lane", "is required with trigger %q (the lane title the CI page shows)", t.Trigger)
	}
	if s, ok := o.Str("concurrency_group", false, "a non-empty string"); ok {
		switch {
		case strings.TrimSpace(s) == "":
			o.Failf("concurrency_group", "must be non-empty when present")
		case t.Trigger == TriggerNone && !o.Failed("trigger"):
			o.Failf("concurrency_group", "only lanes have a concurrency group; set `trigger` or drop it")
		}
		t.ConcurrencyGroup = s
	}
	if fs, ok := o.Strings("filters", false, "an array of path patterns"); ok {
		seen := map[string]bool{}
		for k, f := range fs {
			field := fmt.Sprintf("filters[%d]", k)
			if msg := patternProblem(f); msg != "" {
				o.Failf(field, "%s", msg)
			} else if seen[f] {
				o.Failf(field, "duplicate filter %q", f)
			}
			seen[f] = true
		}
		t.Filters = fs
	}
	if raws, ok := o.Array("jobs", true, "a non-empty array of jobs"); ok {
		if len(raws) == 0 {
			o.Failf("jobs", "must hold at least one job")
		}
		ids := map[string]int{}
		for k, raw := range raws {
			j, ok := p.job(entry, k, raw)
			if prev, dup := ids[j.ID]; dup && j.ID != "" {
				p.add(fmt.Sprintf("%s: jobs[%d] (%q)", entry, k, j.ID), "id", "duplicate job id; jobs[%d] has it too", prev)
				ok = false
			} else if j.ID != "" {
				ids[j.ID] = k
			}
			if ok {
				t.Jobs = append(t.Jobs, j)
			}
		}
	}
	finish(o)
	return t, len(p.errs) == before
}

func (p *parser) job(targetEntry string, k int, raw json.RawMessage) (Job, bool) {
	entry := fmt.Sprintf("%s: jobs[%d]", targetEntry, k)
	if id := peekID(raw); id != "" {
		entry += fmt.Sprintf(" (%q)", id)
	}
	o := p.object(entry, raw, "a job object")
	if o == nil {
		return Job{}, false
	}
	before := len(p.errs)
	var j Job
	j.ID, _ = nameField(o, "id", true)
	j.Description, _ = o.Str("description", false, "a string")
	if raw, ok := o.Raw("timeout_secs", false, ""); ok {
		var n json.Number
		v, err := int64(0), json.Unmarshal(raw, &n)
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(raw), []byte(`"`)) {
			err = errors.New("a string") // json.Number accepts "30"; a catalog must not
		}
		if err == nil {
			v, err = n.Int64()
		}
		switch {
		case err != nil:
			o.Failf("timeout_secs", "expected a whole number of seconds, got %s", wording.Value(raw))
		case v <= 0:
			o.Failf("timeout_secs", "must be > 0, got %d", v)
		default:
			j.TimeoutSecs = uint64(v)
		}
	} else {
		o.FailMissing("timeout_secs", "a whole number of seconds > 0")
	}
	// parseCommand checks what model.JobCommand.Compile needs; the checks
	// below need only a known kind.
	kindOK := false
	if c := sub(o, "command", true, "an object with `kind`"); c != nil {
		j.Command = parseCommand(c)
		kindOK = j.Command.Kind != ""
	}
	rtOK := false
	if r := sub(o, "runtime", true, `an object with "kind": "incus" or "host_process"`); r != nil {
		j.Runtime, rtOK = parseRuntime(r)
	}
	wantPlacement, wantExecutor := model.PlacementLocal, model.ExecutorHostLocal
	if j.Runtime.IsIncus() {
		wantPlacement, wantExecutor = model.PlacementRemoteSSH, model.ExecutorRemoteLinuxVM
	}
	if kindOK && rtOK {
		host := j.Command.Kind == model.CmdHostShell
		switch {
		case host && j.Runtime.IsIncus():
			o.Failf("command.kind", "kind %q runs on the host; it needs runtime kind %q, got %q", j.Command.Kind, model.RuntimeHostProcess, j.Runtime.Kind)
		case !host && !j.Runtime.IsIncus():
			o.Failf("command.kind", "kind %q runs in an Incus guest; it needs runtime kind %q, got %q (use kind %q for host jobs)",
				j.Command.Kind, model.RuntimeIncus, j.Runtime.Kind, model.CmdHostShell)
		}
	}
	j.Placement, j.Executor = wantPlacement, wantExecutor
	if s, ok := o.Str("placement", false, `"remote_ssh" or "local"`); ok && rtOK && model.Placement(s) != wantPlacement {
		o.Failf("placement", "must be %q for runtime kind %q (or be left out), got %q", wantPlacement, j.Runtime.Kind, s)
	}
	if s, ok := o.Str("executor", false, `"remote_linux_vm" or "host_local"`); ok && rtOK && s != wantExecutor {
		o.Failf("executor", "must be %q for runtime kind %q (or be left out), got %q", wantExecutor, j.Runtime.Kind, s)
	}
	j.Staged = j.Command.Kind == model.CmdStaged
	if v, ok := o.Bool("staged", false, "true or false"); ok && kindOK && v != j.Staged {
		o.Failf("staged", "must be %t for command kind %q (or be left out), got %t", j.Staged, j.Command.Kind, v)
	}
	if s := sub(o, "staged_linux", false, "an object"); s != nil {
		if kindOK && !j.Staged {
			o.Failf("staged_linux", "only staged jobs (command kind %q) have it", model.CmdStaged)
		}
		j.StagedLinux = parseStagedLinux(s)
	}
	j.Writable, _ = o.Bool("writable", false, "true or false")
	j.RunAsRoot = j.Command.Kind == model.CmdShellAsRoot // as Compile says
	if v, ok := o.Bool("run_as_root", false, "true or false"); ok && kindOK && v != j.RunAsRoot {
		o.Failf("run_as_root", "must be %t for command kind %q (or be left out), got %t", j.RunAsRoot, j.Command.Kind, v)
	}
	if names, ok := o.Strings("secret_env", false, "an array of environment variable names"); ok {
		seen := map[string]int{}
		for i, name := range names {
			field := fmt.Sprintf("secret_env[%d]", i)
			if msg := model.SecretEnvProblem(name); msg != "" {
				o.Failf(field, "%s", msg)
			} else if prev, dup := seen[name]; dup {
				o.Failf(field, "%q is named twice (secret_env[%d] too)", name, prev)
			}
			seen[name] = i
		}
		j.SecretEnv = names
	}
	finish(o)
	return j, len(p.errs) == before
}

// commandFields lists, per command kind, the fields it needs.
var commandFields = map[model.CommandKind][]string{
	model.CmdShell:                 {"command"},
	model.CmdShellAsRoot:           {"command"},
	model.CmdHostShell:             {"command"},
	model.CmdCargoExactTest:        {"package", "test"},
	model.CmdCargoPackageUnitTests: {"package"},
	model.CmdCargoPackageTests:     {"package"},
	model.CmdCargoFilteredTests:    {"package", "filter"},
	model.CmdStaged:                {"wrapper"},
}

func parseCommand(o *model.StrictObject) model.JobCommand {
	var c model.JobCommand
	vals := map[string]*string{"command": &c.Command, "package": &c.Package, "test": &c.Test, "filter": &c.Filter, "wrapper": &c.Wrapper}
	for _, f := range []string{"command", "package", "test", "filter", "wrapper"} {
		*vals[f], _ = o.Str(f, false, "a string")
	}
	kinds := make([]string, 0, len(commandFields))
	for k := range commandFields {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	kind, ok := o.Str("kind", true, "one of "+strings.Join(kinds, ", "))
	if !ok {
		finish(o)
		return c
	}
	need, known := commandFields[model.CommandKind(kind)]
	if !known {
		o.Failf("kind", "must be one of %s, got %q", strings.Join(kinds, ", "), kind)
		finish(o)
		return c
	}
	c.Kind = model.CommandKind(kind)
	for _, f := range []string{"command", "package", "test", "filter", "wrapper"} {
		needed := slices.Contains(need, f)
		switch v := *vals[f]; {
		case needed && strings.TrimSpace(v) == "":
			o.Failf(f, "must be a non-empty string for kind %q", kind)
		case !needed && o.Has(f):
			o.Failf(f, "is not used by kind %q (it takes %s)", kind, strings.Join(need, ", "))
		}
	}
	if c.Kind == model.CmdStaged && c.Wrapper != "" && !path.IsAbs(c.Wrapper) {
		o.Failf("wrapper", "must be an absolute path in the guest, got %q", c.Wrapper)
	}
	finish(o)
	return c
}

func parseRuntime(o *model.StrictObject) (model.RuntimeConfig, bool) {
	var r model.RuntimeConfig
	kind, ok := o.Str("kind", true, `"incus" or "host_process"`)
	good := ok
	if ok {
		switch model.RuntimeKind(kind) {
		case model.RuntimeIncus, model.RuntimeHostProcess:
			r.Kind = model.RuntimeKind(kind)
		case model.RuntimeTart:
			o.Failf("kind", "tart (macOS) runtimes are not supported by jerichoci")
			good = false
		default:
			o.Failf("kind", `must be "incus" or "host_process", got %q`, kind)
			good = false
		}
	}
	in := sub(o, "incus", r.Kind == model.RuntimeIncus, "an object with `guest_role`")
	switch {
	case in == nil:
		good = good && r.Kind != model.RuntimeIncus
	case r.Kind == model.RuntimeHostProcess:
		o.Failf("incus", "only runtime kind %q takes it", model.RuntimeIncus)
		good = false
	default:
		cfg := &model.IncusRuntime{InstanceType: model.InstanceAuto}
		if raw, ok := in.Raw("guest_role", false, ""); ok {
			if err := json.Unmarshal(raw, &cfg.GuestRole); err != nil {
				in.Failf("guest_role", "%v", err)
				good = false
			}
		} else {
			in.FailMissing("guest_role", "\"pikaci-runner\" for CI jobs, or \"managed-openclaw\"")
			good = false
		}
		if s, ok := in.Str("instance_type", false, `"auto", "container" or "virtual-machine"`); ok {
			if !model.InstanceType(s).Valid() {
				in.Failf("instance_type", `must be "auto", "container" or "virtual-machine", got %q`, s)
				good = false
			}
			cfg.InstanceType = model.InstanceType(s)
		}
		finish(in)
		if r.Kind == model.RuntimeIncus {
			r.Incus = cfg
		}
	}
	finish(o)
	return r, good
}

func parseStagedLinux(o *model.StrictObject) *StagedLinux {
	var s StagedLinux
	for _, f := range []struct {
		name     string
		dst      *string
		required bool
	}{
		{"prepare_node_prefix", &s.PrepareNodePrefix, true},
		{"snapshot_profile", &s.SnapshotProfile, true},
		{"workspace_deps_output", &s.WorkspaceDepsOutput, true},
		{"workspace_build_output", &s.WorkspaceBuildOutput, true},
		{"prepare_description", &s.PrepareDescription, false},
	} {
		// v is "" when the field is absent or not a string.
		v, ok := o.Str(f.name, f.required, "a non-empty string")
		if ok && strings.TrimSpace(v) == "" {
			o.Failf(f.name, "must be non-empty")
		}
		*f.dst = v
	}
	if p := s.SnapshotProfile; p != "" && p != SnapshotProfileRust && p != SnapshotProfileFollowup {
		o.Failf("snapshot_profile", "must be %q or %q, got %q", SnapshotProfileRust, SnapshotProfileFollowup, p)
	}
	finish(o)
	return &s
}

// patternProblem says what is wrong with a path pattern, or "".
func patternProblem(p string) string {
	switch {
	case p == "":
		return "must be a non-empty path pattern"
	case strings.HasPrefix(p, "/"):
		return fmt.Sprintf("must be relative to the repository root, got %q", p)
	}
	if _, err := CompileGlob(p); err != nil {
		return fmt.Sprintf("invalid pattern %q: %v", p, err)
	}
	return ""
}

// peekID returns the string `id` of a JSON object, or "".
func peekID(raw json.RawMessage) string {
	var m map[string]json.RawMessage
	var id string
	if json.Unmarshal(raw, &m) != nil || json.Unmarshal(m["id"], &id) != nil {
		return ""
	}
	return id
}

// parser collects every problem of one file.
type parser struct {
	file string
	errs []error
}

// add records a problem in the caller's words: with the field named when
// there is one.
func (p *parser) add(entry, field, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if field != "" {
		msg = wording.About(field, msg)
	}
	p.addWorded(entry, field, msg)
}

// addWorded records a problem already worded (internal/wording).
func (p *parser) addWorded(entry, field, msg string) {
	p.errs = append(p.errs, &FieldError{File: p.file, Entry: entry, Field: field, Msg: msg})
}

// object reads raw as the object of an entry ("" for the file itself); nil
// (with the problem recorded) when it is not one.
func (p *parser) object(entry string, raw json.RawMessage, expected string) *model.StrictObject {
	o, err := model.NewStrictObject(raw, p.report(entry))
	if err != nil {
		p.add(entry, "", "expected %s, got %s", expected, wording.Described(raw))
		return nil
	}
	repeated(o)
	return o
}

// report words the problems the strict decoder finds in an entry.
func (p *parser) report(entry string) func(model.StrictProblem) {
	return func(pr model.StrictProblem) {
		switch pr.Kind {
		case model.StrictMissing:
			p.addWorded(entry, pr.Field, wording.Missing(pr.Field, pr.Expected))
		case model.StrictInvalid:
			p.addWorded(entry, pr.Field, wording.Invalid(pr.Field, pr.Expected, wording.Value(pr.Value)))
		case model.StrictUnknown:
			p.addWorded(entry, pr.Field, wording.Unknown(pr.Field, wording.Value(pr.Value), wording.OneOf(pr.Known)))
		case model.StrictRepeated:
			p.addWorded(entry, pr.Field, wording.Repeated(pr.Field))
		default:
			p.add(entry, pr.Field, "%s", pr.Msg)
		}
	}
}

// repeated reports every key an object writes more than once.
func repeated(o *model.StrictObject) {
	for _, k := range o.Repeated() {
		o.FailRepeated(k)
	}
}

// sub returns a nested object, or nil when absent (reported if required) or
// not an object (reported).
func sub(o *model.StrictObject, field string, required bool, expected string) *model.StrictObject {
	s := o.Sub(field, required, expected)
	if s != nil {
		repeated(s)
	}
	return s
}

// finish reports every field nobody asked for, in document order.
func finish(o *model.StrictObject) {
	for _, k := range o.Unknown() {
		o.FailUnknown(k)
	}
}

// nameField reads an id or title field.
func nameField(o *model.StrictObject, field string, required bool) (string, bool) {
	s, ok := o.Str(field, required, nameExpected)
	if ok && !names.Valid(s) {
		o.Failf(field, "expected %s, got %q", nameExpected, s)
		return s, false
	}
	return s, ok
}
