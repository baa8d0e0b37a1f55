package devstack

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Child is a process a local stack runs as a service of its own, its output in a log file
// of its own. It runs in its own process group, so a signal reaches it and whatever it
// started, and it dies with the process that started it.
type Child struct {
	Name, Log string
	cmd       *exec.Cmd
	done      chan struct{}
	err       error // how it exited, once done is closed
}

// StartChild starts bin with args and env (nil: this process's), appending its output to
// the file log.
func StartChild(name, log string, env []string, bin string, args ...string) (*Child, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("devstack: %s: log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("devstack: start %s: %w", name, err)
	}
	c := &Child{Name: name, Log: log, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		f.Close()
		close(c.done)
	}()
	return c, nil
}

// Done is closed when the child has exited; Err then says how.
func (c *Child) Done() <-chan struct{} { return c.done }

// Err is how the child exited (nil before it has).
func (c *Child) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Stop asks the child to shut down (SIGTERM) and waits up to grace, then kills it.
func (c *Child) Stop(grace time.Duration) error {
	return c.signal(syscall.SIGTERM, grace)
}

// Kill is kill -9 of the child's process group.
func (c *Child) Kill() error { return c.signal(syscall.SIGKILL, 10*time.Second) }

func (c *Child) signal(sig syscall.Signal, wait time.Duration) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	if err := syscall.Kill(-c.cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("devstack: %s: kill -%d: %w", c.Name, sig, err)
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(wait):
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
	return fmt.Errorf("devstack: %s did not stop within %s; killed (log %s)", c.Name, wait, c.Log)
}
