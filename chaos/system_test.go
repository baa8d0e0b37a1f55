package chaos_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/sdk/client"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/workflows"
)

// system is OrderFlow as it runs in production, on this machine: PostgreSQL and Temporal
// (both keeping their data on disk, so they can be restarted), and the broker, the API
// replicas and the workers as separate `orderflow` processes. Every address is loopback,
// every folder is under one temporary folder, and everything is stopped in t.Cleanup.
type system struct {
	topology
	dir string // everything the run writes
	bin string // the orderflow binary

	pgDir  string
	pgPort int
	pgMu   sync.Mutex
	pg     *devstack.Postgres // nil while stopped

	temporalPort   int // the frontend's; the Temporal server also takes the next 767
	temporalDB     string
	temporalMu     sync.Mutex
	temporal       *devstack.Temporal       // the dev server; nil while stopped
	temporalOut    *os.File                 // its output, while it runs
	temporalServer *devstack.TemporalServer // the Temporal server; nil while stopped

	env      map[string]string // what every orderflow process gets
	baseURLs []string          // the API replicas', apis[i] at baseURLs[i]

	broker  *process
	apis    []*process
	workers []*process // workers[:replicas] always run between scenarios; others are extra

	pool *pgxpool.Pool // the suite's own view of the database
	tc   client.Client // the suite's own Temporal client
	kc   *kgo.Client   // a plain Kafka client, as any other service would use
	adm  *kadm.Client  // over kc
	http *http.Client  // for the load and readiness checks

	reported map[string]bool // log problems already reported
}

// readyTimeout bounds how long a started process may take to become ready.
const readyTimeout = 90 * time.Second

// apiApplicationName is the application_name of the API's PostgreSQL sessions.
const apiApplicationName = "orderflow-api"

// topology is the shape of a system: which Temporal it runs, and how many of each
// orderflow process.
type topology struct {
	// temporalOnPostgres: the Temporal server built from go.temporal.io/server,
	// persistence and visibility on the suite's PostgreSQL, 4 history shards (make
	// cluster's), rather than the dev server on a SQLite file.
	temporalOnPostgres bool
	replicas           int // API replicas, and workers that run between scenarios
}

var (
	// devTopology is make run's: the dev server, one API, one worker.
	devTopology = topology{replicas: 1}
	// clusterTopology is make cluster's: the Temporal server, two APIs, two workers.
	clusterTopology = topology{temporalOnPostgres: true, replicas: 2}
)

// startSystem builds the binary, starts every service and process of the topology, and
// migrates.
func startSystem(t *testing.T, top topology) *system {
	t.Helper()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "orderflow-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	s := &system{topology: top, dir: dir, http: &http.Client{Timeout: 20 * time.Second}, reported: map[string]bool{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chaos: logs of the failed run are kept in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	t.Logf("chaos: working folder %s", dir)

	s.bin = orderflowBinary(t)

	s.pgDir = filepath.Join(dir, "pg")
	s.pgPort = freePort(t)
	if err := s.startPostgres(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stopPostgres(false); err != nil {
			t.Error(err)
		}
	})

	if top.temporalOnPostgres {
		s.temporalPort = temporalServerPorts(t)
	} else {
		s.temporalPort = freePort(t)
		s.temporalDB = filepath.Join(dir, "temporal.db")
	}
	if err := s.startTemporal(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stopTemporal(); err != nil {
			t.Error(err)
		}
	})

	kafkaPort := freePort(t)
	brokerAddr := "127.0.0.1:" + strconv.Itoa(kafkaPort)
	s.env = map[string]string{
		"DATABASE_URL":     s.pgURL(),
		"TEMPORAL_ADDRESS": "127.0.0.1:" + strconv.Itoa(s.temporalPort),
		"KAFKA_BROKERS":    brokerAddr,
		"HTTP_ADDR":        "127.0.0.1:" + strconv.Itoa(freePort(t)),
		"DATA_DIR":         filepath.Join(dir, "data"),
		"DEV_KAFKA_PORT":   strconv.Itoa(kafkaPort),
		"LOG_LEVEL":        "warn",
		"LOG_FORMAT":       "text",
		// Short backoff, as in the end-to-end stack, but a budget of about a minute, so
		// that no restart in this suite (a few seconds each) parks an order.
		"ACTIVITY_RETRY_INITIAL":      "50ms",
		"ACTIVITY_RETRY_MAX_INTERVAL": "250ms",
		"ACTIVITY_RETRY_MAX_ATTEMPTS": "240",
		// The suite's load is more than the system executes on purpose; rate limits (the
		// api package's tests) would refuse it before it reached the faults.
		"RATE_LIMIT_TRADE": "off",
		"RATE_LIMIT_READ":  "off",
		// Admission control has a test of its own; here a refusal would read as a fault.
		"ADMISSION_MAX_DELAY": "off",
	}

	// Clients of the suite's own. They reconnect by themselves after each restart, since
	// every service comes back on the same address.
	if s.pool, err = pgxpool.New(ctx, s.pgURL()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.pool.Close)
	// The suite's requests carry the credential each needs (API keys made on first use,
	// after the migration): authentication is on, as in production.
	s.http.Transport = devstack.NewCredentials(s.pool).Transport(nil)
	if s.tc, err = client.Dial(client.Options{HostPort: s.env["TEMPORAL_ADDRESS"]}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.tc.Close)
	if s.kc, err = kgo.NewClient(kgo.SeedBrokers(brokerAddr)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.kc.Close)
	s.adm = kadm.NewClient(s.kc)

	if out, errOut, err := s.command(ctx, "migrate"); err != nil {
		t.Fatalf("orderflow migrate: %v\n%s%s", err, out, errOut)
	}
	s.broker = s.newProcess("broker", "broker", nil)
	for i := range top.replicas {
		name, addr := "api", s.env["HTTP_ADDR"]
		if top.replicas > 1 {
			name = fmt.Sprintf("api%d", i+1)
		}
		if i > 0 {
			addr = "127.0.0.1:" + strconv.Itoa(freePort(t))
		}
		// The API's sessions carry a name of their own in pg_stat_activity, so a scenario
		// can terminate them and no other's (orderflow sets none).
		s.apis = append(s.apis, s.newProcess(name, "api", map[string]string{
			"DATABASE_URL": s.pgURL() + "&application_name=" + apiApplicationName,
			"HTTP_ADDR":    addr,
			"METRICS_ADDR": fmt.Sprintf("127.0.0.1:%d", freePort(t)), // its admin listener
		}))
		s.baseURLs = append(s.baseURLs, "http://"+addr)
	}
	for range top.replicas {
		s.addWorker()
	}
	for _, p := range s.core() {
		t.Cleanup(func() {
			if err := p.stop(); err != nil {
				t.Error(err)
			}
		})
	}
	if err := s.heal(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// The orderflow binary, built once for all the tests; TestMain removes binDir.
var (
	binDir  string
	binOnce sync.Once
	binPath string
	binErr  error
)

// orderflowBinary builds `orderflow` with the race detector, once, so that the processes
// the suite runs report data races the way `go test -race` does.
func orderflowBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		root, err := filepath.Abs("..")
		if err != nil {
			binErr = err
			return
		}
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
			binErr = fmt.Errorf("the module root %s has no go.mod: %w", root, err)
			return
		}
		if binDir, err = os.MkdirTemp("", "orderflow-chaos-bin-"); err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(binDir, "orderflow")
		started := time.Now()
		cmd := exec.Command("go", "build", "-race", "-o", binPath, "./cmd/orderflow")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build -race ./cmd/orderflow: %w\n%s", err, out)
			return
		}
		t.Logf("chaos: built %s with -race in %s", binPath, time.Since(started).Round(time.Millisecond))
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pgURL is the database URL, as devstack.Postgres.URL builds it, known even while the
// cluster is down.
func (s *system) pgURL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/orderflow?sslmode=disable", s.pgPort)
}

// environ returns the process environment: the machine's, without any OrderFlow setting
// it may carry, plus the system's, plus extra.
func (s *system) environ(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := s.env[k]; ours {
			continue
		}
		if _, ours := extra[k]; ours {
			continue
		}
		switch k {
		case "METRICS_ADDR", "TEMPORAL_NAMESPACE", "DB_MAX_CONNS", "CANCEL_WAIT", "STUCK_AFTER":
			continue
		}
		env = append(env, kv)
	}
	for k, v := range s.env {
		env = append(env, k+"="+v)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// newProcess describes an orderflow process (not started).
func (s *system) newProcess(name, command string, extra map[string]string) *process {
	return &process{
		name: name, bin: s.bin, args: []string{command},
		env: s.environ(extra), log: filepath.Join(s.dir, name+".log"),
	}
}

// addWorker describes one more worker with its own metrics address.
func (s *system) addWorker() *process {
	n := len(s.workers) + 1
	port, err := devstack.FreePort()
	if err != nil {
		panic(err) // the kernel has no free port: nothing in this suite can work
	}
	w := s.newProcess(fmt.Sprintf("worker%d", n), "worker", map[string]string{
		"METRICS_ADDR": "127.0.0.1:" + strconv.Itoa(port),
		// The SDK fails a workflow task whose code does not yield for 1s ("potential
		// deadlock") and then lets that code run on beside its dispatcher, which the race
		// detector reports. On this suite's machine — two cores shared with other test
		// processes, every binary built with -race — a starved worker trips it with
		// correct workflow code, so the detector is off here (TEMPORAL_DEBUG); the
		// workflow tests and the replay test keep it on.
		"TEMPORAL_DEBUG": "1",
		// The reconciler gives an open order whose run was terminated a new run within
		// this (default 30s), so the operators' scenario settles in seconds.
		"RECONCILE_INTERVAL": "2s",
	})
	s.workers = append(s.workers, w)
	return w
}

// metricsURL returns a worker's metrics base URL.
func metricsURL(w *process) string {
	for _, kv := range w.env {
		if v, ok := strings.CutPrefix(kv, "METRICS_ADDR="); ok {
			return "http://" + v
		}
	}
	return ""
}

// apiURL returns an API replica's base URL.
func (s *system) apiURL(p *process) string {
	for i, a := range s.apis {
		if a == p {
			return s.baseURLs[i]
		}
	}
	return ""
}

// core returns the processes that run between scenarios: the broker, every API replica
// and workers[:replicas].
func (s *system) core() []*process {
	return append(append([]*process{s.broker}, s.apis...), s.workers[:s.replicas]...)
}

// command runs a one-shot orderflow command (migrate, audit) and returns its standard
// output and standard error.
func (s *system) command(ctx context.Context, args ...string) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = s.environ(nil)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.Bytes(), errOut.Bytes(), err
}

// heal brings back whatever is down — PostgreSQL, Temporal, the broker, the APIs,
// workers[:replicas] — and waits until each is ready, so every scenario starts from a
// healthy system.
func (s *system) heal(ctx context.Context) error {
	if err := s.startPostgres(ctx); err != nil {
		return err
	}
	if err := s.startTemporal(ctx); err != nil {
		return err
	}
	for _, p := range s.core() {
		if err := s.ensure(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// ensure starts p unless it runs, and waits until it is ready.
func (s *system) ensure(ctx context.Context, p *process) error {
	if !p.running() {
		if err := p.start(); err != nil {
			return err
		}
	}
	return s.waitReady(ctx, p)
}

// waitReady waits until p answers as ready: the broker serves metadata, the API's
// /readyz is 200 (PostgreSQL reachable), a worker's /readyz is 200 (PostgreSQL, Temporal
// and Kafka all reachable).
func (s *system) waitReady(ctx context.Context, p *process) error {
	var check func() error
	switch p.args[0] {
	case "broker":
		check = func() error {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := s.adm.ListTopics(cctx, kafka.TopicOrderExecution)
			return err
		}
	case "api":
		check = func() error { return s.get200(ctx, s.apiURL(p)+"/readyz") }
	default:
		check = func() error { return s.get200(ctx, metricsURL(p)+"/readyz") }
	}
	return waitUntil(ctx, readyTimeout, p.name+" ready", func() (bool, error) {
		if !p.running() {
			return false, fmt.Errorf("%s is not running; see %s", p.name, p.log)
		}
		return check() == nil, nil
	})
}

func (s *system) get200(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	return nil
}

// startPostgres starts the cluster (creating it the first time) unless it runs.
func (s *system) startPostgres(ctx context.Context) error {
	s.pgMu.Lock()
	defer s.pgMu.Unlock()
	if s.pg != nil {
		return nil
	}
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresOptions{Dir: s.pgDir, Port: s.pgPort})
	if err != nil {
		return err
	}
	s.pg = pg
	return nil
}

// stopPostgres shuts the cluster down, keeping its data: in fast mode (sessions cut,
// then a checkpoint), or, with crash, in immediate mode (as a power cut would; the next
// start recovers from the write-ahead log).
func (s *system) stopPostgres(crash bool) error {
	s.pgMu.Lock()
	defer s.pgMu.Unlock()
	if s.pg == nil {
		return nil
	}
	stop := s.pg.Stop
	if crash {
		stop = s.pg.Crash
	}
	err := stop()
	s.pg = nil
	return err
}

// startTemporal starts Temporal on its ports and data unless it runs — the dev server on
// its database file, or the Temporal server on its PostgreSQL databases (set up the first
// time, kept after) — and waits until it serves; a restart finds every run where it was.
func (s *system) startTemporal(ctx context.Context) error {
	s.temporalMu.Lock()
	defer s.temporalMu.Unlock()
	if s.temporalOnPostgres {
		return s.startTemporalServer(ctx)
	}
	if s.temporal != nil {
		return nil
	}
	out, err := os.OpenFile(filepath.Join(s.dir, "temporal.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	tmp, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{
		CLIPath:          os.Getenv("TEMPORAL_CLI"),
		Port:             s.temporalPort,
		DBFile:           s.temporalDB,
		SearchAttributes: workflows.SearchAttributeTypes(),
		Output:           out,
	})
	if err != nil {
		out.Close()
		return err
	}
	s.temporal, s.temporalOut = tmp, out
	return nil
}

// startTemporalServer is startTemporal for the Temporal server; temporalMu is held.
func (s *system) startTemporalServer(ctx context.Context) error {
	if s.temporalServer != nil {
		return nil
	}
	bins := map[string]string{}
	for _, name := range []string{"temporal-server", "temporal-sql-tool", "temporal-schema"} {
		p, err := devstack.ModuleBin(name)
		if err != nil {
			return err
		}
		bins[name] = p
	}
	s.pgMu.Lock()
	pg := s.pg
	s.pgMu.Unlock()
	if pg == nil {
		return errors.New("the Temporal server needs PostgreSQL, which is stopped")
	}
	ts, err := devstack.StartTemporalServer(ctx, devstack.TemporalServerOptions{
		ServerPath: bins["temporal-server"], SQLToolPath: bins["temporal-sql-tool"], SchemaDir: bins["temporal-schema"],
		Postgres: pg, Dir: s.temporalDir(), BasePort: s.temporalPort,
		SearchAttributes: workflows.SearchAttributeTypes(),
	})
	if err != nil {
		return err
	}
	s.temporalServer = ts
	return nil
}

// temporalDir holds the Temporal server's config and log.
func (s *system) temporalDir() string { return filepath.Join(s.dir, "temporal") }

// temporalLog is where Temporal's output goes.
func (s *system) temporalLog() string {
	if s.temporalOnPostgres {
		return filepath.Join(s.temporalDir(), "temporal-server.log")
	}
	return filepath.Join(s.dir, "temporal.log")
}

// stopTemporal stops Temporal gracefully, keeping its data.
func (s *system) stopTemporal() error {
	s.temporalMu.Lock()
	defer s.temporalMu.Unlock()
	if s.temporalServer != nil {
		err := s.temporalServer.Stop(30 * time.Second)
		s.temporalServer = nil
		return err
	}
	if s.temporal == nil {
		return nil
	}
	err := s.temporal.Stop()
	s.temporalOut.Close()
	s.temporal, s.temporalOut = nil, nil
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		// Interrupted on purpose; how it exits after SIGINT is not a failure.
		return nil
	}
	return err
}

// killTemporal is kill -9 of the Temporal server: whatever it had not persisted is gone.
func (s *system) killTemporal() error {
	s.temporalMu.Lock()
	defer s.temporalMu.Unlock()
	if s.temporalServer == nil {
		return errors.New("kill -9 of Temporal: the Temporal server is not running")
	}
	err := s.temporalServer.Kill()
	s.temporalServer = nil
	return err
}

// temporalServerPorts returns a frontend port for the Temporal server such that it and
// the 767 after it are free now. They sit below the kernel's ephemeral ports (32768 on),
// so that no outgoing connection takes one while the server is down between its lives,
// and below `orderflow cluster`'s test (20000 on) and its default ports (17233 on); the
// first slot tried depends on the process id, so that two suites rarely try the same.
func temporalServerPorts(t *testing.T) int {
	t.Helper()
	const first, width, slots = 10_000, 800, 8                // 10000 to 16767
	offsets := []int{0, 1, 2, 6, 10, 700, 701, 702, 706, 767} // devstack.StartTemporalServer's
	for k := range slots {
		base := first + width*((os.Getpid()+k)%slots)
		free := true
		for _, o := range offsets {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+o))
			if err != nil {
				free = false
				break
			}
			l.Close()
		}
		if free {
			return base
		}
	}
	t.Fatalf("no free range of ports for the Temporal server between %d and %d", first, first+width*slots)
	return 0
}

// waitUntil polls cond every 50ms until it reports true, it fails, or timeout passes.
func waitUntil(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not reached after %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
