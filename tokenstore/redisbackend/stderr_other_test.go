//go:build !linux

package redisbackend

import (
	"io"
	"os"
	"testing"
)

// captureStderr runs fn with os.Stderr pointing at a pipe and returns what
// was written there.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	defer func() { os.Stderr = old }()
	fn()
	os.Stderr = old
	_ = w.Close()
	out := <-done
	_ = r.Close()
	return string(out)
}

// writeStderrProbe writes s to os.Stderr (the pipe while captured).
func writeStderrProbe(s string) { _, _ = io.WriteString(os.Stderr, s) }
