package testenv

import (
	"bytes"
	"log/slog"
	"sync"
)

// LogBuffer collects log output for tests that check what an operator would
// read (or must never read, such as a secret). Writers may be concurrent.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Logger returns a text logger at the default level and the buffer it writes to.
func Logger() (*slog.Logger, *LogBuffer) {
	logs := &LogBuffer{}
	return slog.New(slog.NewTextHandler(logs, nil)), logs
}
