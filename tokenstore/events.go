package tokenstore

import (
	"sync"
	"time"
)

// Event announces a change to a credential: a new generation written here
// or announced by another instance, or a change of state.
type Event struct {
	ID         string    `json:"id"`
	Generation uint64    `json:"generation"`
	State      State     `json:"state"`
	Kind       string    `json:"kind"` // refreshed, adopted, remote, dead, replaced, forgotten, backoff
	Time       time.Time `json:"time"`
}

// eventBus fans events out to subscribers without ever blocking the
// refresh path: a subscriber that falls behind loses events (it can
// re-list) and is told so by a gap in generations.
type eventBus struct {
	mu   sync.Mutex
	subs map[chan Event]struct{}
}

// Subscribe returns a channel of events and a function that ends the
// subscription.
func (m *Manager) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 64)
	m.events.mu.Lock()
	if m.events.subs == nil {
		m.events.subs = make(map[chan Event]struct{})
	}
	m.events.subs[ch] = struct{}{}
	m.events.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			m.events.mu.Lock()
			delete(m.events.subs, ch)
			m.events.mu.Unlock()
		})
	}
}

func (m *Manager) emit(c *Credential, kind string, gen uint64) {
	m.events.mu.Lock()
	defer m.events.mu.Unlock()
	if len(m.events.subs) == 0 {
		return
	}
	c.mu.Lock()
	state := c.stateLocked()
	c.mu.Unlock()
	ev := Event{ID: c.id, Generation: gen, State: state, Kind: kind, Time: m.now()}
	for ch := range m.events.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}
