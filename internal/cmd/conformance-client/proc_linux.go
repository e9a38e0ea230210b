package main

import "syscall"

// childAttrs makes Caddy die with this process, however it ends (the
// suite kills its client command's shell at its timeout).
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
