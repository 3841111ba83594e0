package incus

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// StatusError is an error answer of the server: an error envelope (whatever
// the HTTP status, see the wait trap in docs/INCUS.md) or an HTTP error.
type StatusError struct {
	Method string
	Path   string // below /1.0, without the query
	Status int    // error_code of the envelope, else the HTTP status
	Msg    string // the server's reason, verbatim
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s /1.0%s: %d %s: %s", e.Method, e.Path, e.Status, strings.ToLower(http.StatusText(e.Status)), e.Msg)
}

// StatusCode returns the status of the *StatusError in err's chain, or 0.
func StatusCode(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// IsNotFound reports whether err is (or wraps) a 404 answer.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// IsConflict reports whether err is (or wraps) a 409 answer: an object of
// that name exists already. CreateInstance also reports a duplicate name
// this way, although the server only says so in a failed operation.
func IsConflict(err error) bool { return StatusCode(err) == http.StatusConflict }

// IsBadRequest reports whether err is (or wraps) a 400 answer, e.g. an
// action that does not fit the instance's state.
func IsBadRequest(err error) bool { return StatusCode(err) == http.StatusBadRequest }

// OperationError is an operation that ended in failure or was cancelled.
type OperationError struct {
	Op *Operation // the final state of the operation
}

func (e *OperationError) Error() string {
	msg := e.Op.Err
	if msg == "" {
		msg = "no reason given"
	}
	return fmt.Sprintf("operation %s %s: %s", e.Op.ID, strings.ToLower(e.Op.Status), msg)
}
