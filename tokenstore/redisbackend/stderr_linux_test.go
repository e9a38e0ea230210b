package redisbackend

import (
	"io"
	"os"
	"syscall"
	"testing"
)

// captureStderr runs fn with file descriptor 2 (and os.Stderr) pointing
// at a pipe and returns what was written there. go-redis's default
// logger holds the *os.File it saw at init, so swapping os.Stderr alone
// would miss it.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := syscall.Dup(2)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(w.Fd()), 2, 0); err != nil {
		t.Fatal(err)
	}
	oldStderr := os.Stderr
	os.Stderr = w
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	defer func() {
		os.Stderr = oldStderr
		_ = syscall.Dup3(saved, 2, 0)
		_ = syscall.Close(saved)
	}()
	fn()
	os.Stderr = oldStderr
	if err := syscall.Dup3(saved, 2, 0); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	out := <-done
	_ = r.Close()
	return string(out)
}

// writeStderrProbe writes s to file descriptor 2 itself. Not through
// os.Stderr: under go test -json (-test.v=test2json) the testing package
// makes os.Stderr os.Stdout (go.dev/issue/33419), and the probe would
// miss the capture.
func writeStderrProbe(s string) { _, _ = syscall.Write(2, []byte(s)) }
