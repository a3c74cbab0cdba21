package lifecycle

import (
	"errors"
	"log/slog"
	"net"
	"sync"
)

// Closers closes what a service opened, last opened first, each once,
// logging what fails. It is the one shape of a service's cleanup: New adds
// each client, pool and listener as it opens it and, should a later step
// fail, returns Fail(err), so that nothing it opened outlives it; Run
// closes them all once lifecycle.Run returns; Close does the same for a
// service built and never run.
type Closers struct {
	log *slog.Logger

	mu     sync.Mutex
	list   []closer
	closed bool
}

type closer struct {
	name string
	fn   func() error
}

// NewClosers returns an empty Closers that logs to log.
func NewClosers(log *slog.Logger) *Closers { return &Closers{log: log} }

// Add registers fn, run by Close under name.
func (c *Closers) Add(name string, fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, closer{name, fn})
}

// Close runs every closer added, last first, once. A listener already
// closed (its server ran and stopped) is not a failure.
func (c *Closers) Close() {
	c.mu.Lock()
	list := c.list
	done := c.closed
	c.closed, c.list = true, nil
	c.mu.Unlock()
	if done {
		return
	}
	for i := len(list) - 1; i >= 0; i-- {
		if err := list[i].fn(); err != nil && !errors.Is(err, net.ErrClosed) {
			c.log.Warn("closing "+list[i].name+" failed", "error", err)
		}
	}
}

// Fail closes everything added so far and returns err.
func (c *Closers) Fail(err error) error {
	c.Close()
	return err
}
