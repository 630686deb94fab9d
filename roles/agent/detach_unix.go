//go:build unix

package agent

import "syscall"

// detached starts the background waiter in a session of its own: no
// controlling terminal, so closing the terminal does not stop it.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
