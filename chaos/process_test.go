package chaos_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is one OrderFlow process (api, worker, broker) that the suite starts, kills and
// restarts. Its output, over all its lives, goes to one log file. It runs in a process
// group of its own, so a signal reaches it and anything it started.
type process struct {
	name string
	bin  string
	args []string
	env  []string
	log  string // path of the log file

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{} // closed when the current life ends
	expectExit bool          // the suite asked it to stop, so an exit is no surprise
	starts     int
	unexpected []string // exits nobody asked for
}

// start starts a new life of p; it must not be running.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s: already running", p.name)
		}
	}
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(f, "=== chaos: %s start #%d at %s\n", p.name, p.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	// Pdeathsig: should the suite itself die (a test timeout does not run t.Cleanup),
	// the process goes with it rather than holding its ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("%s: start: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.expectExit = cmd, done, false
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "=== chaos: %s exited at %s: %v\n", p.name, time.Now().Format(time.RFC3339Nano), err)
		f.Close()
		p.mu.Lock()
		if !p.expectExit {
			p.unexpected = append(p.unexpected, fmt.Sprintf("%s exited by itself: %v (log %s)", p.name, err, p.log))
		}
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// running reports whether the current life has not ended.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig to p's process group and waits up to wait for it to exit; after
// that it kills the group. It is a no-op for a process that is not running.
func (p *process) signal(sig syscall.Signal, wait time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	if cmd == nil {
		p.mu.Unlock()
		return nil
	}
	p.expectExit = true
	p.mu.Unlock()
	select {
	case <-done:
		return nil
	default:
	}
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s: kill -%d: %w", p.name, sig, err)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-done:
		return nil
	case <-timer.C:
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	if sig == syscall.SIGKILL {
		return fmt.Errorf("%s: still running %s after SIGKILL", p.name, wait)
	}
	return fmt.Errorf("%s: did not stop within %s of signal %d; killed", p.name, wait, sig)
}

// kill is kill -9: the process gets no chance to finish anything.
func (p *process) kill() error { return p.signal(syscall.SIGKILL, 10*time.Second) }

// stop asks p to shut down gracefully (SIGTERM), as a deploy would.
func (p *process) stop() error { return p.signal(syscall.SIGTERM, 30*time.Second) }

// surprises returns the exits nobody asked for, and forgets them.
func (p *process) surprises() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.unexpected
	p.unexpected = nil
	return out
}

// logProblems returns the lines of p's log that show a data race or a panic.
func (p *process) logProblems() []string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "WARNING: DATA RACE") || strings.HasPrefix(line, "panic:") ||
			strings.HasPrefix(line, "fatal error:") {
			out = append(out, fmt.Sprintf("%s: %s (log %s)", p.name, line, p.log))
		}
	}
	return out
}
