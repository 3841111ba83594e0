package incus

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The websocket exec of the fake server: POST /1.0/instances/<inst>/exec
// answers an operation with four secrets, GET /1.0/operations/<id>/websocket
// accepts them, and the scripted command runs once 0, 1 and 2 are
// connected, as incusd does. The command's end sends the end-of-stream
// messages on stdout and stderr, closes every socket and then ends the
// operation (a success with its return code, or a failure behind the wait
// trap).

const fakeExecOp = "6c1f3a52-8d0e-4b7a-9f21-3e5d7c9a0b14"

// fakeExec is one exec of the fake server.
type fakeExec struct {
	t       *testing.T
	secrets map[string]string // secret → fd name ("0", "1", "2", "control")
	fds     map[string]string // fd name → secret, as announced
	run     func(*fakeCmd)

	ctx  context.Context // ends at cleanup
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu            sync.Mutex
	body          []byte
	conns         map[string]*websocket.Conn
	started       bool
	controls      []string // control messages, as received
	controlClosed bool     // the client dropped the control socket while the command ran
	stdinEnd      string   // how stdin ended: "empty text message", "close …"
	over          bool
	wait          []byte // answer of /wait once over
	get           []byte // answer of GET operation once over

	ended     chan struct{} // closed when the command is over
	stdinDone chan struct{} // closed when stdin ended
	signals   chan int      // control signals, for the command
}

// fakeCmd is the running command, as the script sees it.
type fakeCmd struct {
	x       *fakeExec
	Signals <-chan int // closed when the control socket goes
}

// newFakeExec routes an exec in instance r1 to the scripted command run.
func newFakeExec(t *testing.T, f *fakeServer, run func(*fakeCmd)) *fakeExec {
	x := &fakeExec{t: t, run: run, secrets: map[string]string{}, fds: map[string]string{},
		conns: map[string]*websocket.Conn{}, ended: make(chan struct{}), stdinDone: make(chan struct{}),
		signals: make(chan int, 16)}
	for i, fd := range []string{"0", "1", "2", "control"} {
		s := fmt.Sprintf("secret-%d-%s", i, fd)
		x.secrets[s] = fd
		x.fds[fd] = s
	}
	x.ctx, x.stop = context.WithCancel(context.Background())
	t.Cleanup(func() {
		x.stop()
		x.closeAll()
		x.wg.Wait()
	})
	f.handle("POST", "/1.0/instances/r1/exec", x.post)
	f.handle("GET", "/1.0/operations/"+fakeExecOp+"/websocket", x.websocket)
	f.handle("GET", "/1.0/operations/"+fakeExecOp+"/wait", x.waitOp)
	f.handle("GET", "/1.0/operations/"+fakeExecOp, x.getOp)
	return x
}

func (x *fakeExec) post(w http.ResponseWriter, r *http.Request) {
	body := readAll(r)
	x.mu.Lock()
	x.body = body
	fds := x.fds
	x.mu.Unlock()
	md, _ := json.Marshal(map[string]any{"fds": fds, "command": []string{"x"}, "interactive": false})
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, `{"type":"async","status":"Operation created","status_code":100,"operation":"/1.0/operations/%s",`+
		`"metadata":{"id":"%s","class":"websocket","description":"Executing command","status":"Running","status_code":103,"metadata":%s,"may_cancel":false,"err":""}}`,
		fakeExecOp, fakeExecOp, md)
}

func (x *fakeExec) websocket(w http.ResponseWriter, r *http.Request) {
	fd, ok := x.secrets[r.URL.Query().Get("secret")]
	if !ok {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"type":"error","error_code":403,"error":"not authorized"}`))
		return
	}
	x.mu.Lock()
	_, dup := x.conns[fd]
	x.mu.Unlock()
	if dup {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"type":"error","error_code":400,"error":"Websocket number already connected"}`))
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.conns[fd] = conn
	switch fd {
	case "control":
		x.wg.Add(1)
		go x.readControl(conn)
	case "0":
		x.wg.Add(1)
		go x.readStdin(conn)
	default:
		conn.CloseRead(x.ctx)
	}
	if !x.started && x.conns["0"] != nil && x.conns["1"] != nil && x.conns["2"] != nil {
		x.started = true
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			x.run(&fakeCmd{x: x, Signals: x.signals})
		}()
	}
}

func (x *fakeExec) readControl(conn *websocket.Conn) {
	defer x.wg.Done()
	defer close(x.signals)
	for {
		_, msg, err := conn.Read(x.ctx)
		if err != nil {
			x.mu.Lock()
			if !x.over && x.ctx.Err() == nil {
				x.controlClosed = true
			}
			x.mu.Unlock()
			return
		}
		x.mu.Lock()
		x.controls = append(x.controls, string(msg))
		x.mu.Unlock()
		var c struct {
			Command string `json:"command"`
			Signal  int    `json:"signal"`
		}
		if json.Unmarshal(msg, &c) == nil && c.Command == "signal" {
			select {
			case x.signals <- c.Signal:
			default:
			}
		}
	}
}

func (x *fakeExec) readStdin(conn *websocket.Conn) {
	defer x.wg.Done()
	typ, msg, err := conn.Read(x.ctx)
	end := ""
	switch {
	case err != nil:
		end = fmt.Sprintf("closed (%v)", websocket.CloseStatus(err))
	case typ == websocket.MessageText && len(msg) == 0:
		end = "empty text message"
	default:
		end = fmt.Sprintf("unexpected %v message of %d bytes", typ, len(msg))
	}
	x.mu.Lock()
	x.stdinEnd = end
	x.mu.Unlock()
	close(x.stdinDone)
	if err == nil {
		conn.CloseRead(x.ctx)
	}
}

// write sends one binary message on output fd ("1" or "2").
func (c *fakeCmd) write(fd string, p []byte) error {
	c.x.mu.Lock()
	conn := c.x.conns[fd]
	c.x.mu.Unlock()
	return conn.Write(c.x.ctx, websocket.MessageBinary, p)
}

func (c *fakeCmd) Stdout(s string) { c.write("1", []byte(s)) }
func (c *fakeCmd) Stderr(s string) { c.write("2", []byte(s)) }

// Exit ends the command with a code: the operation succeeds.
func (c *fakeCmd) Exit(code int) {
	c.end(opEnvelope("Success", 200, fmt.Sprintf(`{"return":%d}`, code), ""), nil)
}

// Fail ends the operation in failure behind the wait trap, with a return
// code when ret is not nil.
func (c *fakeCmd) Fail(ret *int, msg string) {
	md := "null"
	if ret != nil {
		md = fmt.Sprintf(`{"return":%d}`, *ret)
	}
	wait := fmt.Appendf(nil, `{"type":"error","status":"","status_code":0,"operation":"","error_code":400,"error":%q,"metadata":null}`, msg)
	c.end(wait, opEnvelope("Failure", 400, md, msg))
}

// ExitWithoutEndOfStream ends the command with a code, closing stdout and
// stderr without their end-of-stream messages.
func (c *fakeCmd) ExitWithoutEndOfStream(code int) {
	c.finish(opEnvelope("Success", 200, fmt.Sprintf(`{"return":%d}`, code), ""), nil, false, true)
}

// ExitLeavingSocketsOpen ends the command with a code after the
// end-of-stream messages, and leaves the sockets open.
func (c *fakeCmd) ExitLeavingSocketsOpen(code int) {
	c.finish(opEnvelope("Success", 200, fmt.Sprintf(`{"return":%d}`, code), ""), nil, true, false)
}

// ExitRaw ends the operation as a success with the given metadata.
func (c *fakeCmd) ExitRaw(metadata string) {
	c.end(opEnvelope("Success", 200, metadata, ""), nil)
}

// end sends the end-of-stream messages, closes the sockets like incusd,
// and ends the operation.
func (c *fakeCmd) end(wait, get []byte) { c.finish(wait, get, true, true) }

func (c *fakeCmd) finish(wait, get []byte, endOfStream, closeSockets bool) {
	// Like a command that reads its stdin to the end (else closing the
	// sockets could drop the client's end-of-stdin message unread).
	select {
	case <-c.x.stdinDone:
	case <-c.x.ctx.Done():
	case <-time.After(30 * time.Second):
	}
	c.x.mu.Lock()
	outs := []*websocket.Conn{c.x.conns["1"], c.x.conns["2"]}
	c.x.mu.Unlock()
	for _, o := range outs {
		if endOfStream {
			o.Write(c.x.ctx, websocket.MessageText, nil)
		}
	}
	c.x.mu.Lock()
	c.x.over = true
	c.x.wait, c.x.get = wait, get
	if get == nil {
		c.x.get = wait
	}
	c.x.mu.Unlock()
	if closeSockets {
		c.x.closeAll()
	}
	close(c.x.ended)
}

// Done is closed at cleanup: a script that waits for something must give
// up then.
func (c *fakeCmd) Done() <-chan struct{} { return c.x.ctx.Done() }

func (x *fakeExec) closeAll() {
	x.mu.Lock()
	conns := make([]*websocket.Conn, 0, len(x.conns))
	for _, c := range x.conns {
		conns = append(conns, c)
	}
	x.mu.Unlock()
	for _, c := range conns {
		c.CloseNow()
	}
}

func opEnvelope(status string, code int, metadata, errMsg string) []byte {
	return fmt.Appendf(nil, `{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"",`+
		`"metadata":{"id":"%s","class":"websocket","description":"Executing command","status":"%s","status_code":%d,"metadata":%s,"may_cancel":false,"err":%q}}`,
		fakeExecOp, status, code, metadata, errMsg)
}

func (x *fakeExec) waitOp(w http.ResponseWriter, r *http.Request) {
	select {
	case <-x.ended:
	case <-r.Context().Done():
		return
	case <-x.ctx.Done():
		return
	}
	x.mu.Lock()
	body := x.wait
	x.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

func (x *fakeExec) getOp(w http.ResponseWriter, _ *http.Request) {
	x.mu.Lock()
	body := x.get
	x.mu.Unlock()
	if body == nil {
		body = opEnvelope("Running", 103, "null", "")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

// record returns what the fake saw: the POST body, the control messages,
// how stdin ended and whether the control socket was dropped while the
// command ran.
func (x *fakeExec) record() (body string, controls []string, stdinEnd string, controlClosed bool) {
	x.mu.Lock()
	stdin := x.conns["0"] != nil
	x.mu.Unlock()
	if stdin {
		select {
		case <-x.stdinDone:
		case <-time.After(30 * time.Second):
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return string(x.body), append([]string(nil), x.controls...), x.stdinEnd, x.controlClosed
}
