package gateway

import (
	"bytes"
	"io"
	"net/http"
	"sync/atomic"
)

// maxReplayMemory bounds the request bodies held for replay across all
// requests of the process. A client declares a body's length before
// sending it, so reservations count declared lengths; beyond the bound a
// request streams without replay (a 401 for it reaches the client, and
// the next request gets a fresh token).
const maxReplayMemory = 64 << 20

// replayReserved is the memory reserved for replay bodies right now.
var replayReserved atomic.Int64

func reserveReplay(n int64) bool {
	if replayReserved.Add(n) > maxReplayMemory {
		replayReserved.Add(-n)
		return false
	}
	return true
}

func releaseReplay(n int64) { replayReserved.Add(-n) }

// noBody is the replay body of a request declared empty.
var noBody = []byte{}

// replayBody buffers a request body of known length up to MaxReplayBody
// so it can be sent again. The buffer grows as bytes arrive, never from
// the declared Content-Length alone. Anything else streams and is not
// replayable. reserved is what release must give back.
func (g *Gateway) replayBody(r *http.Request) (body []byte, replayable bool, reserved int64, err error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true, 0, nil
	}
	n := r.ContentLength
	if n == 0 {
		// Nothing to read or hold (Caddy wraps even an empty body, so
		// this is the usual GET); a replay sends http.NoBody.
		return noBody, true, 0, nil
	}
	if n < 0 || n > g.MaxReplayBody {
		return nil, false, 0, nil
	}
	if !reserveReplay(n) {
		gatewayMetrics.replayBudget.Inc()
		return nil, false, 0, nil
	}
	var buf bytes.Buffer
	buf.Grow(int(min(n, 4<<10)))
	got, err := buf.ReadFrom(io.LimitReader(r.Body, n))
	if err == nil && got < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		releaseReplay(n)
		return nil, false, 0, err
	}
	return buf.Bytes(), true, n, nil
}
