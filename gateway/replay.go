package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
)

// maxReplayMemory bounds the request bodies held for replay across all
// requests of the process. Reservations count bytes as they arrive, never
// a client's declared length: a slow client that declares a large body
// and sends it byte by byte holds only what it sent. Beyond the bound a
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

// errReplayBudget stops buffering a body once the process-wide budget is
// spent.
var errReplayBudget = errors.New("replay memory budget spent")

// reservingReader reserves replay memory for each chunk it reads.
type reservingReader struct {
	r        io.Reader
	reserved int64
}

func (rr *reservingReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if n > 0 {
		if !reserveReplay(int64(n)) {
			return n, errReplayBudget
		}
		rr.reserved += int64(n)
	}
	return n, err
}

// replayBody buffers a request body of known length up to MaxReplayBody
// so it can be sent again, reserving memory as the bytes arrive. A body
// of unknown or larger length streams and is not replayable; so does one
// that meets the spent budget halfway (what was read goes first, then
// the rest). reserved is what release must give back.
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
	var buf bytes.Buffer
	buf.Grow(int(min(n, 4<<10)))
	rr := &reservingReader{r: io.LimitReader(r.Body, n)}
	got, err := buf.ReadFrom(rr)
	if errors.Is(err, errReplayBudget) {
		releaseReplay(rr.reserved)
		gatewayMetrics.replayBudget.Inc()
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf.Bytes()), r.Body), r.Body}
		return nil, false, 0, nil
	}
	if err == nil && got < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		releaseReplay(rr.reserved)
		return nil, false, 0, err
	}
	return buf.Bytes(), true, rr.reserved, nil
}
