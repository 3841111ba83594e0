package incus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"
)

// The plumbing of Exec over the websocket API (wait-for-websocket, not
// interactive). The operation's metadata holds one secret per websocket:
// "0" stdin, "1" stdout, "2" stderr and "control"; each is opened with
// GET /1.0/operations/<id>/websocket?secret=…. The server starts the
// command once 0, 1 and 2 are connected (and fails the operation when they
// are not within a few seconds). Data goes in binary messages; an empty
// text message ends a stream, in both directions. On the control socket a
// {"command":"signal","signal":N} text message signals the command's
// process, and losing the socket while the command runs makes the server
// kill it. The server closes every socket when the command is over, after
// the end-of-stream messages of stdout and stderr and before the operation
// is marked done.

// Bounds of the websocket exec. Variables so that tests can shorten them.
var (
	// execDialTimeout bounds opening the four websockets.
	execDialTimeout = 30 * time.Second
	// execIOTimeout bounds one message sent on stdin or the control socket.
	execIOTimeout = 5 * time.Second
	// execEndWait bounds the wait for the command's end after SIGKILL.
	execEndWait = 10 * time.Second
	// execDrainIdle bounds the delivery of the output once the command is
	// over: Exec gives up when no byte arrived for that long.
	execDrainIdle = 10 * time.Second
)

// Signals sent on the control socket.
const (
	sigKILL = 9
	sigTERM = 15
)

// execSecrets are the websocket secrets of an exec operation.
type execSecrets struct {
	stdin, stdout, stderr, control string
}

// execSecretsOf reads the secrets from the operation's metadata.
func execSecretsOf(op *Operation) (execSecrets, error) {
	var md struct {
		FDs map[string]string `json:"fds"`
	}
	if len(op.Metadata) > 0 && string(op.Metadata) != "null" {
		if err := json.Unmarshal(op.Metadata, &md); err != nil {
			return execSecrets{}, fmt.Errorf("operation %s: decode websocket secrets: %w", op.ID, err)
		}
	}
	s := execSecrets{stdin: md.FDs["0"], stdout: md.FDs["1"], stderr: md.FDs["2"], control: md.FDs["control"]}
	var missing []string
	for _, f := range []struct{ name, secret string }{{"0", s.stdin}, {"1", s.stdout}, {"2", s.stderr}, {"control", s.control}} {
		if f.secret == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return execSecrets{}, fmt.Errorf("operation %s: no websocket secret for fds %s in its metadata", op.ID, strings.Join(missing, ", "))
	}
	return s, nil
}

// dialOperation opens the websocket of operation opID that secret names,
// over the client's own transport (the unix socket, or TLS), with the
// client's project.
func (c *Client) dialOperation(ctx context.Context, opID, secret, fd string) (*websocket.Conn, error) {
	path := "/operations/" + url.PathEscape(opID) + "/websocket"
	start := time.Now()
	conn, resp, err := websocket.Dial(ctx, c.url(path, url.Values{"secret": {secret}}), &websocket.DialOptions{
		HTTPClient: c.hc, CompressionMode: websocket.CompressionDisabled,
		// incusd pings each exec websocket as it connects and every 10 s
		// to keep it open, and never waits for a pong. Answering is a
		// write, which fails once incusd has closed the socket of a
		// command that already ended, and that failure would end the
		// read of output still buffered on our side.
		OnPingReceived: func(context.Context, []byte) bool { return false },
	})
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 && resp.Body != nil {
			// An error envelope, as for any call.
			if _, derr := decodeEnvelope(http.MethodGet, path, resp); derr != nil {
				return nil, fmt.Errorf("open websocket %s: %w", fd, derr)
			}
		}
		// The URL in a *url.Error holds the secret: keep it out.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("open websocket %s: GET /1.0%s: %w", fd, path, err)
	}
	c.log.Debug("websocket", zap.String("path", path), zap.String("fd", fd), zap.Duration("took", time.Since(start)))
	return conn, nil
}

// execSession is the four websockets of one exec.
type execSession struct {
	log     *zap.Logger
	control *websocket.Conn
	stdin   *websocket.Conn
	outputs [2]*websocket.Conn // stdout, stderr
	names   [2]string

	progress chan struct{} // gets a value when output arrived
	done     [2]chan error // the end of each output stream
}

// attachExec connects the websockets of an exec operation. The control
// socket comes first: the command starts only once the other three are
// connected, and from then on closing the control socket kills it, so a
// failure half-way leaves nothing running.
func (c *Client) attachExec(ctx context.Context, opID string, secrets execSecrets, log *zap.Logger) (*execSession, error) {
	dctx, cancel := context.WithTimeout(ctx, execDialTimeout)
	defer cancel()
	s := &execSession{log: log, names: [2]string{"stdout", "stderr"}, progress: make(chan struct{}, 1)}
	for _, x := range []struct {
		dst        **websocket.Conn
		secret, fd string
	}{
		{&s.control, secrets.control, "control"},
		{&s.stdin, secrets.stdin, "0 (stdin)"},
		{&s.outputs[0], secrets.stdout, "1 (stdout)"},
		{&s.outputs[1], secrets.stderr, "2 (stderr)"},
	} {
		conn, err := c.dialOperation(dctx, opID, x.secret, x.fd)
		if err != nil {
			s.close()
			return nil, err
		}
		*x.dst = conn
	}
	return s, nil
}

// start closes stdin and starts copying stdout and stderr to out.
func (s *execSession) start(ctx context.Context, out *execOutput) {
	// An empty text message is the end of stdin. Should it not go
	// through, closing the socket ends stdin as well.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), execIOTimeout)
	if err := s.stdin.Write(wctx, websocket.MessageText, nil); err != nil {
		s.log.Debug("close stdin", zap.Error(err))
		s.stdin.CloseNow()
	}
	cancel()
	// Nothing comes on stdin and control but pings (not answered: see
	// dialOperation), which are read and dropped.
	s.stdin.CloseRead(context.Background())
	s.control.CloseRead(context.Background())
	for i, conn := range s.outputs {
		s.done[i] = make(chan error, 1)
		w := streamWriter{o: out, w: out.writers[i], name: s.names[i], progress: s.progress}
		go func() { s.done[i] <- follow(conn, w) }()
	}
}

// follow copies the messages of an output websocket to w until the
// server's end-of-stream message or the end of the connection.
func follow(conn *websocket.Conn, w io.Writer) error {
	conn.SetReadLimit(-1) // messages are streamed, not held in memory
	buf := make([]byte, 32<<10)
	for {
		typ, r, err := conn.Reader(context.Background())
		if err != nil {
			// The server closes the connection after the end-of-stream
			// message; a clean close before it loses no data either.
			if errors.Is(err, io.EOF) || websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				return nil
			}
			return err
		}
		if typ == websocket.MessageText {
			return nil // end of stream
		}
		// w never fails (streamWriter keeps the error for itself), so an
		// error is the connection's.
		if _, err := io.CopyBuffer(w, r, buf); err != nil {
			return err
		}
	}
}

// signal sends a signal to the command through the control socket.
func (s *execSession) signal(ctx context.Context, sig int) {
	msg, _ := json.Marshal(struct {
		Command string `json:"command"`
		Signal  int    `json:"signal"`
	}{"signal", sig})
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), execIOTimeout)
	defer cancel()
	if err := s.control.Write(wctx, websocket.MessageText, msg); err != nil {
		// The command may be over already (the server closed the
		// socket); if not, a broken control socket kills it.
		s.log.Debug("send signal", zap.Int("signal", sig), zap.Error(err))
	}
}

// stop ends the running command because of cause (ctx's end, or a writer's
// error): SIGTERM, SIGKILL after grace, then a bounded wait for the
// operation's end. It returns the error to report, wrapping cause.
func (s *execSession) stop(ctx context.Context, cause error, grace time.Duration, w *execWait) error {
	s.log.Debug("stopping the command", zap.NamedError("cause", cause))
	s.signal(ctx, sigTERM)
	if w.within(grace) {
		return fmt.Errorf("command stopped with SIGTERM: %w", cause)
	}
	s.signal(ctx, sigKILL)
	if w.within(execEndWait) {
		return fmt.Errorf("command stopped with SIGTERM, then SIGKILL after %s: %w", grace, cause)
	}
	// Still no end: drop the control socket (the server kills the
	// command when it goes) and stop waiting, which cancels the
	// operation.
	s.control.CloseNow()
	w.cancel()
	<-w.done
	return fmt.Errorf("command sent SIGTERM, then SIGKILL after %s, and not seen ending %s later: %w", grace, execEndWait, cause)
}

// drain waits until stdout and stderr are delivered. When the command is
// over (ended), it waits as long as output keeps arriving, and gives up
// after execDrainIdle without any; else it closes the streams at once.
// Either way the copying goroutines are over when it returns.
func (s *execSession) drain(ended bool) error {
	pending := 0
	for _, d := range s.done {
		if d != nil {
			pending++
		}
	}
	var firstErr error
	idle := time.NewTimer(execDrainIdle)
	defer idle.Stop()
	if !ended {
		s.closeOutputs()
	}
	for pending > 0 {
		select {
		case err := <-s.done[0]:
			s.done[0] = nil
			pending--
			if err != nil && firstErr == nil && ended {
				firstErr = fmt.Errorf("read stdout: %w", err)
			}
		case err := <-s.done[1]:
			s.done[1] = nil
			pending--
			if err != nil && firstErr == nil && ended {
				firstErr = fmt.Errorf("read stderr: %w", err)
			}
		case <-s.progress:
			idle.Reset(execDrainIdle)
		case <-idle.C:
			s.closeOutputs()
			for _, d := range s.done {
				if d != nil {
					<-d
				}
			}
			return fmt.Errorf("output incomplete: nothing arrived for %s after the command ended", execDrainIdle)
		}
	}
	return firstErr
}

func (s *execSession) closeOutputs() {
	for _, c := range s.outputs {
		if c != nil {
			c.CloseNow()
		}
	}
}

// close closes every websocket (the server closed its side already when
// the command is over).
func (s *execSession) close() {
	s.closeOutputs()
	for _, c := range []*websocket.Conn{s.stdin, s.control} {
		if c != nil {
			c.CloseNow()
		}
	}
}

// execWait waits for the end of an exec operation, on a context detached
// from the caller's.
type execWait struct {
	done   chan struct{}
	cancel context.CancelFunc
	op     *Operation // valid once done is closed
	err    error
}

func (c *Client) waitExec(ctx context.Context, opID string) *execWait {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &execWait{done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(w.done)
		defer cancel()
		w.op, w.err = c.waitCommand(wctx, opID)
	}()
	return w
}

// within reports whether the operation ends within d.
func (w *execWait) within(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.done:
		return true
	case <-t.C:
		return false
	}
}

// ended reports whether the wait is over with the operation's end (or an
// error of the server), not because it was abandoned.
func (w *execWait) ended() bool {
	select {
	case <-w.done:
		return w.op != nil || !errors.Is(w.err, context.Canceled)
	default:
		return false
	}
}

// execOutput is where the output goes: the writes of both streams are
// serialised, and the first write error is kept; from then on the output
// is read and dropped, so that the command is not blocked on a full pipe
// while it is being stopped.
type execOutput struct {
	writers [2]io.Writer
	mu      sync.Mutex
	err     error
	failed  chan struct{} // closed at the first write error
}

func newExecOutput(stdout, stderr io.Writer) *execOutput {
	return &execOutput{writers: [2]io.Writer{stdout, stderr}, failed: make(chan struct{})}
}

func (o *execOutput) error() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// streamWriter writes one stream to its writer under the output's lock.
type streamWriter struct {
	o        *execOutput
	w        io.Writer
	name     string
	progress chan<- struct{}
}

func (s streamWriter) Write(p []byte) (int, error) {
	select {
	case s.progress <- struct{}{}:
	default:
	}
	s.o.mu.Lock()
	defer s.o.mu.Unlock()
	if s.w == nil || s.o.err != nil {
		return len(p), nil
	}
	n, err := s.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		s.o.err = fmt.Errorf("write %s: %w", s.name, err)
		close(s.o.failed)
	}
	return len(p), nil
}
