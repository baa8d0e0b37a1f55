// Package devstack starts the services OrderFlow needs on one machine without Docker: a
// PostgreSQL cluster from the machine's own binaries, the Temporal dev server, and an
// in-process Kafka-protocol broker. `orderflow dev` and the integration tests both use it,
// so the tests run against exactly what `make run` runs.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// ErrNoPostgres is returned when no PostgreSQL server binaries can be found.
var ErrNoPostgres = errors.New("PostgreSQL server binaries (initdb, pg_ctl) were not found: install them with `apt-get install postgresql` or set DATABASE_URL")

// Postgres is a local PostgreSQL cluster run by pg_ctl.
type Postgres struct {
	dir    string
	bindir string
	port   int
	owner  *user.User // nil when the cluster runs as the current user
}

// PostgresOptions says where the cluster lives and which port it listens on (0: any free).
type PostgresOptions struct {
	Dir  string
	Port int
	// TLSCertFile and TLSKeyFile, when set, turn on TLS with this certificate (copied
	// into the cluster's folder, where the server may read it).
	TLSCertFile, TLSKeyFile string
}

// StartPostgres starts the cluster in opts.Dir, creating it first if the folder holds
// none, and creates the database "orderflow" if it is missing. As root it runs the server
// as the "postgres" user, since PostgreSQL refuses to run as root.
func StartPostgres(ctx context.Context, opts PostgresOptions) (*Postgres, error) {
	bindir, err := postgresBindir()
	if err != nil {
		return nil, err
	}
	port := opts.Port
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return nil, err
		}
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	p := &Postgres{dir: dir, bindir: bindir, port: port}
	if os.Geteuid() == 0 {
		if p.owner, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("devstack: running as root needs a postgres user to run the server: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	if err := p.chown(dir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		out, err := p.command(ctx, "initdb", "-D", dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-instructions").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("devstack: initdb: %w: %s", err, out)
		}
	}
	// A cluster left running by a killed process would make pg_ctl start fail; stop it.
	_ = p.command(ctx, "pg_ctl", "-D", dir, "-m", "fast", "stop").Run()
	serverOpts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200", port, dir)
	if opts.TLSCertFile != "" {
		tlsOpts, err := p.installTLS(opts.TLSCertFile, opts.TLSKeyFile)
		if err != nil {
			return nil, err
		}
		serverOpts += tlsOpts
	}
	logFile := filepath.Join(dir, "server.log")
	out, err := p.command(ctx, "pg_ctl", "-D", dir, "-l", logFile, "-o", serverOpts, "-w", "-t", "60", "start").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("devstack: pg_ctl start: %w: %s", err, out)
	}
	if err := p.CreateDatabase(ctx, "orderflow"); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// installTLS copies the certificate and key into the cluster's folder, owned by the
// server's user (PostgreSQL refuses a key others can read), and returns the server
// options that turn TLS on with them.
func (p *Postgres) installTLS(certFile, keyFile string) (string, error) {
	var opts string
	for _, f := range []struct{ src, name, setting string }{{certFile, "server.crt", "ssl_cert_file"}, {keyFile, "server.key", "ssl_key_file"}} {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return "", fmt.Errorf("devstack: TLS: %w", err)
		}
		dst := filepath.Join(p.dir, f.name)
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			return "", fmt.Errorf("devstack: TLS: %w", err)
		}
		if p.owner != nil { // not p.chown, which opens the parents: the data folder must stay 0700
			uid, _ := strconv.Atoi(p.owner.Uid)
			gid, _ := strconv.Atoi(p.owner.Gid)
			if err := os.Chown(dst, uid, gid); err != nil {
				return "", fmt.Errorf("devstack: TLS: %w", err)
			}
		}
		opts += fmt.Sprintf(" -c %s=%s", f.setting, dst)
	}
	return " -c ssl=on" + opts, nil
}

// URL returns the connection URL of database name on this cluster.
func (p *Postgres) URL(name string) string {
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)), Path: "/" + name}
	u.RawQuery = "sslmode=disable"
	return u.String()
}

// CreateDatabase creates database name unless it exists.
func (p *Postgres) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return fmt.Errorf("devstack: connect: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("devstack: create database %s: %w", name, err)
	}
	return nil
}

// Stop shuts the cluster down, waiting for it to finish.
func (p *Postgres) Stop() error {
	out, err := p.command(context.Background(), "pg_ctl", "-D", p.dir, "-m", "fast", "-w", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("devstack: pg_ctl stop: %w: %s", err, out)
	}
	return nil
}

// Crash stops the cluster the way a power cut would (pg_ctl's immediate mode: no
// checkpoint, every session cut). The data stays, and the next StartPostgres on the same
// folder recovers it from the write-ahead log, keeping every committed transaction.
func (p *Postgres) Crash() error {
	out, err := p.command(context.Background(), "pg_ctl", "-D", p.dir, "-m", "immediate", "-w", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("devstack: pg_ctl stop -m immediate: %w: %s", err, out)
	}
	return nil
}

func (p *Postgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := filepath.Join(p.bindir, name)
	if p.owner == nil {
		return exec.CommandContext(ctx, path, args...)
	}
	cmd := exec.CommandContext(ctx, "runuser", append([]string{"-u", p.owner.Username, "--", path}, args...)...)
	// runuser keeps the caller's working directory, which the postgres user may not be
	// allowed to enter.
	cmd.Dir = p.dir
	return cmd
}

// chown gives dir, and every parent up to the first that is world-executable, to the
// server's user so that it can reach its data folder.
func (p *Postgres) chown(dir string) error {
	if p.owner == nil {
		return nil
	}
	uid, _ := strconv.Atoi(p.owner.Uid)
	gid, _ := strconv.Atoi(p.owner.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("devstack: %w", err)
	}
	for parent := filepath.Dir(dir); parent != "/"; parent = filepath.Dir(parent) {
		st, err := os.Stat(parent)
		if err != nil {
			return fmt.Errorf("devstack: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(parent, st.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("devstack: %w", err)
			}
		}
	}
	return nil
}

// postgresBindir finds the folder holding initdb and pg_ctl: PATH first, then
// pg_config, then Debian's versioned folders (newest first).
func postgresBindir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			if resolved, err := filepath.EvalSymlinks(p); err == nil {
				return filepath.Dir(resolved), nil
			}
			return filepath.Dir(p), nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNoPostgres
}

// FreePort returns a TCP port free on the loopback interface.
//
// It picks one below the kernel's ephemeral range: a port the kernel hands out for ":0"
// is one it also hands to outgoing connections, and under a busy test run one of those
// took such a port between FreePort and the server's bind ("address already in use").
func FreePort() (int, error) {
	lo := ephemeralLow()
	for range 200 {
		port := freePortFloor + rand.IntN(lo-freePortFloor)
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			_ = l.Close()
			return port, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("devstack: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freePortFloor is the lowest port FreePort picks: above the well-known services'.
const freePortFloor = 20000

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's default when it
// cannot be read), at least freePortFloor+1000.
func ephemeralLow() int {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	return max(lo, freePortFloor+1000)
}

// StartTempPostgres starts a throwaway cluster in a new temporary folder, as a test
// binary's TestMain needs; stop shuts it down and removes the folder.
func StartTempPostgres(ctx context.Context, prefix string) (p *Postgres, stop func() error, err error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, nil, fmt.Errorf("devstack: %w", err)
	}
	if p, err = StartPostgres(ctx, PostgresOptions{Dir: filepath.Join(dir, "pg")}); err != nil {
		_ = os.RemoveAll(dir)
		return nil, nil, err
	}
	return p, func() error {
		err := p.Stop()
		return errors.Join(err, os.RemoveAll(dir))
	}, nil
}

// Alive reports whether the cluster's postmaster is still running, by the pid in its
// postmaster.pid (a stopped or crashed cluster has no file, or a pid that is gone).
func (p *Postgres) Alive() bool {
	b, err := os.ReadFile(filepath.Join(p.dir, "postmaster.pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}
