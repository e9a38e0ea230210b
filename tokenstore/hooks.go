package tokenstore

import "time"

// Hooks observe the manager for metrics. Nil funcs are skipped.
type Hooks struct {
	OnTokenRequest func(credentialID, grant string, err error, took time.Duration)
	OnRefresh      func(credentialID, reason string)
	OnAdopt        func(credentialID string)
	OnDead         func(credentialID string)
	OnStoreError   func(credentialID string)
	OnLockWait     func(credentialID string, waited time.Duration)
	// OnRejectedAgain: a reactive refresh was refused (ErrRejectedAgain).
	OnRejectedAgain func(credentialID string)
}

func (h Hooks) rejectedAgain(c *Credential) {
	if h.OnRejectedAgain != nil {
		h.OnRejectedAgain(c.id)
	}
}

func (h Hooks) tokenRequest(c *Credential, grant string, err error, took time.Duration) {
	if h.OnTokenRequest != nil {
		h.OnTokenRequest(c.id, grant, err, took)
	}
}
func (h Hooks) refreshed(c *Credential, reason string) {
	if h.OnRefresh != nil {
		h.OnRefresh(c.id, reason)
	}
}
func (h Hooks) adopted(c *Credential) {
	if h.OnAdopt != nil {
		h.OnAdopt(c.id)
	}
}
func (h Hooks) dead(c *Credential) {
	if h.OnDead != nil {
		h.OnDead(c.id)
	}
}
func (h Hooks) storeError(c *Credential) {
	if h.OnStoreError != nil {
		h.OnStoreError(c.id)
	}
}

func (h Hooks) lockWait(c *Credential, d time.Duration) {
	if h.OnLockWait != nil {
		h.OnLockWait(c.id, d)
	}
}
