package devstack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrDataDirInUse means another process holds a data folder's lock.
var ErrDataDirInUse = errors.New("the data folder is already in use")

// LockDataDir takes the lock of data folder dir (creating it), so that a second stack
// on the same folder refuses before it touches anything, rather than stop the first
// one's services. The lock is an flock on dir/.lock, held until unlock or the process
// ends (a killed process leaves no stale lock). It returns ErrDataDirInUse, naming the
// holder's pid, when another process holds it.
func LockDataDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("devstack: data folder: %w", err)
	}
	path := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another orderflow dev (pid %s) is already running on %s; stop it, or give this one another DATA_DIR",
				ErrDataDirInUse, strings.TrimSpace(string(holder)), dir)
		}
		return nil, fmt.Errorf("devstack: lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}, nil
}
