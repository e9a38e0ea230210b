package tokenstore

import (
	"context"
	"time"
)

// Credentials no configuration uses any more are released and collected.

// Release says one user (a handler of an unloaded config) no longer needs
// the credential. Unused credentials are collected after ReleasedGrace.
func (m *Manager) Release(c *Credential) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.creds[c.id]; cur != nil && cur.users > 0 {
		cur.users--
		if cur.users == 0 {
			cur.releasedAt = m.now().UnixNano()
		}
	}
}

// collect frees credentials released longer than ReleasedGrace ago and
// deletes their stored records when those have not changed for as long.
// A credential with a pending (unpersisted) write is kept: it may hold the
// only copy of a refresh token.
func (m *Manager) collect(ctx context.Context) {
	now := m.now()
	m.mu.Lock()
	var expired []*Credential
	for id, c := range m.creds {
		if c.users == 0 && c.releasedAt != 0 && time.Duration(now.UnixNano()-c.releasedAt) > m.opts.ReleasedGrace {
			c.mu.Lock()
			pending := c.pending
			c.mu.Unlock()
			if !pending {
				delete(m.creds, id)
				expired = append(expired, c)
			}
		}
	}
	m.mu.Unlock()
	for _, c := range expired {
		m.lru.Remove(c.id)
		rec, err := m.load(ctx, c.id)
		if err == nil && now.Sub(rec.UpdatedAt) > m.opts.ReleasedGrace {
			if release, err := m.backend.Lock(ctx, c.id, m.opts.LockTTL); err == nil {
				_ = m.backend.Delete(ctx, c.id)
				release()
			}
		}
		m.logger.Info("collected credential no configuration uses", m.logFields(c)...)
	}
}

func (m *Manager) gcLoop() {
	t := time.NewTicker(m.opts.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
			m.collect(ctx)
			m.collectPending(ctx)
			cancel()
		case <-m.ctx.Done():
			return
		}
	}
}
