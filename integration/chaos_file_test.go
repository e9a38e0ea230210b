package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestChaosFileStore is scenario 7 of the fault-injection suite: the
// file store on a full disk. One instance (a file store is one
// instance's), its file size limit (RLIMIT_FSIZE) lowered for the fault
// so that every write of a credential record fails as on a full disk
// (EFBIG; lock files, smaller, still fit), then restored, as when space
// returns. Rotated pairs must stay in memory, be written afterwards, and
// no refresh token may be presented twice. Caddy's own log lines cannot
// be written meanwhile either.
func TestChaosFileStore(t *testing.T) {
	d := chaosDuration(t)
	r := newChaosRig(t)
	r.startFileNode(t.TempDir())
	pid := r.nodes[0].Pid()
	r.runChaos(t.Name(), func(l *chaosLoad) {
		setFileSizeLimit(t, pid, 256)
		time.Sleep(d)
		setFileSizeLimit(t, pid, unix.RLIM_INFINITY)
	})
	// Pairs rotated during the fault were kept in memory and written
	// once writes worked again.
	if !strings.Contains(r.nodes[0].Logs(), "persisted pending credential") {
		t.Error("no rotated pair was written after the fault: the scenario did not exercise pending writes")
	}
	// The records on disk hold the pairs the authorization server
	// considers current: a restart serves every credential without a
	// token request being refused.
	r.nodes[0].Restart(r.env()...)
	for _, cred := range r.creds {
		if out, detail := chaosRequest(http.DefaultClient, r.nodes[0].URL(cred.prefix+"/echo"), false, 0); out != outOK {
			t.Fatalf("%s after restart: %s %s", cred.clientID, out, detail)
		}
	}
	if n := r.as.ReuseDetections(); n != 0 {
		t.Fatalf("%d refresh-token reuse detections after the restart: a record on disk held a spent refresh token", n)
	}
}

// setFileSizeLimit sets the largest file process pid may write.
func setFileSizeLimit(t *testing.T, pid int, limit uint64) {
	t.Helper()
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: unix.RLIM_INFINITY}, nil); err != nil {
		t.Fatalf("prlimit(%d, RLIMIT_FSIZE, %d): %v", pid, limit, err)
	}
}

// startFileNode starts the rig's one instance on a file store at dir.
func (r *chaosRig) startFileNode(dir string) {
	r.t.Helper()
	global := fmt.Sprintf("\toauth_gateway {\n\t\tstorage file %s\n\t\tencryption_key {env.CHAOS_KEY}\n\t}", dir)
	r.nodes = append(r.nodes, startCaddy(r.t, r.site(), caddyOptions{Global: global, Env: r.env()}))
}
