package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/workflows"
)

// On SIGTERM a worker drains: the lifecycle step in progress (here Execute, held on the
// instrument's lock by the test) finishes and its order settles in the same run, the
// worker takes no new work meanwhile, and the process exits 0 once the step is done, well
// within SHUTDOWN_TIMEOUT.
func TestWorkerDrainFinishesTheStepInProgress(t *testing.T) {
	t.Parallel()
	d := newDrainSystem(t)
	const shutdown = 15 * time.Second
	w := d.startWorker(t, "worker", shutdown)

	const held, later = 101, 102 // seeded instruments of the system's own database
	lock := d.lockInstrument(t, held)
	a := d.mustPlace(t, limit(1, held, "BUY", "10", 1))
	d.waitBlocked(t, lock, "the Execute step of order %d", a)
	if n, err := d.groupMembers(); n != 1 || err != nil {
		t.Fatalf("the consumer group has %d members (%v) while the worker runs, want its 1", n, err)
	}

	sigterm := w.terminate(t)
	// The admin listener closes and the Kafka consumer leaves its group as the shutdown
	// begins, while the step is still held: the worker drains and takes no new message.
	eventually(t, 10*time.Second, "the worker's admin listener to close and its consumer to leave the group", func() bool {
		w.failIfExited(t, "while its step was held")
		n, err := d.groupMembers()
		return !w.listening() && n == 0 && err == nil
	})
	// An order placed during the drain is not taken either: the relay has stopped, and the
	// order's outbox row stays for the next worker's.
	b := d.mustPlace(t, limit(2, later, "BUY", "10", 1))
	if n := d.blockedBy(t, lock); n != 1 {
		t.Fatalf("%d worker sessions wait for the test's lock after SIGTERM, want the Execute step's 1", n)
	}
	if st := d.get(t, a).OrderStatus; st != "SENT_TO_EXECUTOR" {
		t.Fatalf("order %d is %s while its Execute step is held, want SENT_TO_EXECUTOR", a, st)
	}
	w.failIfExited(t, "while its step was held")

	lock.release(t)
	w.waitExit(t, sigterm, shutdown)
	if w.err != nil {
		t.Errorf("the worker exited with %v after its drain, want status 0", w.err)
	}
	t.Logf("the worker exited %s after SIGTERM (%s after the step was released)",
		w.exitedAt.Sub(sigterm).Round(time.Millisecond), w.exitedAt.Sub(lock.releasedAt).Round(time.Millisecond))

	// When the process had exited, the step had committed and its run had recorded it.
	if v := d.get(t, a); v.OrderStatus != "EXECUTING" {
		t.Errorf("order %d is %s after the drain, want EXECUTING (resting on the book)", a, v.OrderStatus)
	}
	d.wantEvents(t, a, "ORDER_PLACED", "VALIDATED", "SENT_TO_EXECUTOR", "EXECUTING")
	h := d.runHistory(t, a)
	if len(h.executedBy) != 1 || !w.is(h.executedBy[0]) {
		t.Errorf("the run recorded Execute in workflow tasks of %q, want one of the draining worker (%d@…)", h.executedBy, w.cmd.Process.Pid)
	}
	if len(h.lostBy) != 0 {
		t.Errorf("workflow tasks of the run timed out or failed on %q, want none", h.lostBy)
	}
	if v := d.get(t, b); v.OrderStatus != "CREATED" {
		t.Errorf("order %d, placed during the drain, is %s, want CREATED (not taken)", b, v.OrderStatus)
	}
	if n := d.outboxRows(t, b); n != 1 {
		t.Errorf("order %d, placed during the drain, has %d outbox rows, want 1 left for the next worker", b, n)
	}
	w.checkLog(t)
}

// A step held longer than SHUTDOWN_TIMEOUT does not keep the worker: it exits after about
// that, the step's transaction rolls back with it, and the run's workflow task, timed out
// on the server, runs the step again on a worker started afterwards. The order executes
// once.
func TestWorkerDrainGivesUpAfterShutdownTimeout(t *testing.T) {
	t.Parallel()
	d := newDrainSystem(t)
	const shutdown = 3 * time.Second
	first := d.startWorker(t, "worker1", shutdown)

	const held = 101
	lock := d.lockInstrument(t, held)
	a := d.mustPlace(t, limit(1, held, "BUY", "10", 1))
	d.waitBlocked(t, lock, "the Execute step of order %d", a)

	sigterm := first.terminate(t)
	// Observed whatever it takes (up to three stop timeouts, one per SDK sub-worker), so
	// that the rest of the test runs; the bound is checked below.
	first.waitExit(t, sigterm, 3*shutdown+10*time.Second)
	took := first.exitedAt.Sub(sigterm)
	t.Logf("the worker exited %s after SIGTERM with its step held (SHUTDOWN_TIMEOUT %s), status %v", took.Round(time.Millisecond), shutdown, first.err)
	if took < shutdown {
		t.Errorf("the worker exited %s after SIGTERM, before SHUTDOWN_TIMEOUT (%s): it did not wait for its step", took, shutdown)
	}
	if took > shutdown+exitSlack {
		t.Errorf("the worker exited %s after SIGTERM, more than SHUTDOWN_TIMEOUT (%s) + %s: SHUTDOWN_TIMEOUT does not bound the drain "+
			"(the SDK waits WorkerStopTimeout for the workflow task, then as long again for its local activity, before it cancels the activity)",
			took, shutdown, exitSlack)
	}
	if first.err != nil {
		t.Errorf("the worker exited with %v, want status 0", first.err)
	}
	if st := d.get(t, a).OrderStatus; st != "SENT_TO_EXECUTOR" {
		t.Fatalf("order %d is %s after its worker left with the step held, want SENT_TO_EXECUTOR (nothing committed)", a, st)
	}

	lock.release(t)
	second := d.startWorker(t, "worker2", 15*time.Second)
	d.waitStatus(t, a, "EXECUTING")
	// The step commits before the workflow task that ran it completes and records it.
	var h drainHistory
	eventually(t, 30*time.Second, "the run to record the Execute step", func() bool {
		h = d.runHistory(t, a)
		return len(h.executedBy) > 0
	})
	d.wantEvents(t, a, "ORDER_PLACED", "VALIDATED", "SENT_TO_EXECUTOR", "EXECUTING")
	if len(h.executedBy) != 1 || !second.is(h.executedBy[0]) {
		t.Errorf("the run recorded Execute in workflow tasks of %q, want one of the second worker (%d@…)", h.executedBy, second.cmd.Process.Pid)
	}
	if len(h.lostBy) == 0 || !first.is(h.lostBy[0]) {
		t.Errorf("workflow tasks lost by %q, want the first worker's (%d@…), which left with the step held", h.lostBy, first.cmd.Process.Pid)
	}

	sigterm = second.terminate(t)
	second.waitExit(t, sigterm, 15*time.Second)
	if second.err != nil {
		t.Errorf("the second worker, idle, exited with %v, want status 0", second.err)
	}
	first.checkLog(t)
	second.checkLog(t)
}

// exitSlack is what a worker may take to exit once its drain is over: closing its pool and
// clients, and the race detector's wait at exit (GORACE atexit_sleep_ms, 1s).
const exitSlack = 2 * time.Second

// drainSystem is an OrderFlow system of a drain test's own: a database on the shared
// stack's PostgreSQL cluster, a Temporal dev server, a broker and an API in this process,
// with `orderflow worker` processes the test starts and signals. Temporal and the broker
// are not the stack's, whose worker polls the same task queue and consumes the same group
// and would take the orders the test means for its own worker.
type drainSystem struct {
	*stack // over the system's API, database and Temporal
	bin    string
	dir    string       // the workers' logs
	kafka  *kadm.Client // on the system's broker
}

func newDrainSystem(t *testing.T) *drainSystem {
	t.Helper()
	shared := needStack(t)
	ctx := context.Background()
	bin := drainBinary(t)

	name := fmt.Sprintf("drain_%d_%d", os.Getpid(), time.Now().UnixNano())
	if _, err := shared.pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = shared.pool.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	u, err := url.Parse(shared.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name

	tmp, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{SearchAttributes: workflows.SearchAttributeTypes()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tmp.Stop() })
	k, err := devstack.StartKafka(devstack.KafkaOptions{Topics: []string{kafka.TopicOrderExecution, kafka.TopicDLQ}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	kc, err := kgo.NewClient(kgo.SeedBrokers(k.Addrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)

	env := map[string]string{
		"DATABASE_URL":        u.String(),
		"TEMPORAL_ADDRESS":    tmp.HostPort,
		"KAFKA_BROKERS":       strings.Join(k.Addrs(), ","),
		"LOG_LEVEL":           "info",
		"RATE_LIMIT_TRADE":    "off",
		"RATE_LIMIT_READ":     "off",
		"ADMISSION_MAX_DELAY": "off",
	}
	getenv := func(k string) string { return env[k] }
	if err := run(ctx, []string{"migrate"}, getenv, io.Discard); err != nil {
		t.Fatal(err)
	}

	s := &stack{dbURL: u.String(), env: env, brokers: k.Addrs()}
	apiEnv := map[string]string{
		"HTTP_ADDR":    "127.0.0.1:" + strconv.Itoa(freePortT(t)),
		"METRICS_ADDR": "127.0.0.1:" + strconv.Itoa(freePortT(t)),
		"LOG_LEVEL":    "warn",
	}
	apiCtx, stopAPI := context.WithCancel(ctx)
	apiDone := make(chan error, 1)
	go func() {
		apiDone <- run(apiCtx, []string{"api"}, func(k string) string { return cmp.Or(apiEnv[k], env[k]) }, io.Discard)
	}()
	t.Cleanup(func() { stopAPI(); <-apiDone })
	s.baseURL = "http://" + apiEnv["HTTP_ADDR"]
	waitReady(t, s.baseURL, apiDone, 30*time.Second)

	if s.pool, err = pgxpool.New(ctx, s.dbURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.pool.Close)
	s.creds = devstack.NewCredentials(s.pool)
	s.client = &http.Client{Transport: s.creds.Transport(nil), Timeout: 20 * time.Second}
	if s.temporal, err = client.Dial(client.Options{HostPort: tmp.HostPort}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.temporal.Close)
	return &drainSystem{stack: s, bin: bin, dir: t.TempDir(), kafka: kadm.NewClient(kc)}
}

// drainBin is the orderflow binary of the drain tests, built with the race detector so
// that its log reports data races as `go test -race` does: built once for the tests that
// run at the same time, and removed after the last of them.
var drainBin struct {
	sync.Mutex
	path  string
	users int
}

func drainBinary(t *testing.T) string {
	t.Helper()
	drainBin.Lock()
	defer drainBin.Unlock()
	if drainBin.path == "" {
		dir, err := os.MkdirTemp("", "orderflow-drain-bin-")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "orderflow")
		started := time.Now()
		if out, err := exec.Command("go", "build", "-race", "-o", path, ".").CombinedOutput(); err != nil {
			_ = os.RemoveAll(dir)
			t.Fatalf("go build -race: %v\n%s", err, out)
		}
		t.Logf("built %s with -race in %s", path, time.Since(started).Round(time.Millisecond))
		drainBin.path = path
	}
	drainBin.users++
	path := drainBin.path
	t.Cleanup(func() {
		drainBin.Lock()
		defer drainBin.Unlock()
		if drainBin.users--; drainBin.users == 0 {
			_ = os.RemoveAll(filepath.Dir(drainBin.path))
			drainBin.path = ""
		}
	})
	return path
}

// drainWorker is one `orderflow worker` process.
type drainWorker struct {
	name, log string
	admin     string // its admin listener (METRICS_ADDR)
	cmd       *exec.Cmd
	done      chan struct{} // closed once it has exited; exitedAt and err are set then
	exitedAt  time.Time
	err       error // how it exited: nil is status 0
}

// startWorker starts `orderflow worker` with the given SHUTDOWN_TIMEOUT and waits until
// it is ready (PostgreSQL, Temporal and Kafka reached; its Temporal worker polling).
func (d *drainSystem) startWorker(t *testing.T, name string, shutdown time.Duration) *drainWorker {
	t.Helper()
	w := &drainWorker{name: name, log: filepath.Join(d.dir, name+".log"),
		admin: "127.0.0.1:" + strconv.Itoa(freePortT(t)), done: make(chan struct{})}
	f, err := os.Create(w.log)
	if err != nil {
		t.Fatal(err)
	}
	env := os.Environ() // the last of duplicate settings wins
	for k, v := range d.env {
		env = append(env, k+"="+v)
	}
	env = append(env, "METRICS_ADDR="+w.admin, "SHUTDOWN_TIMEOUT="+shutdown.String(),
		// The SDK's deadlock detector fails a workflow task whose code does not yield
		// for 1s and lets that code run on beside its dispatcher, which the race
		// detector reports; a -race binary on two busy cores can trip it with correct
		// code (see chaos/system_test.go).
		"TEMPORAL_DEBUG=1")
	w.cmd = exec.Command(d.bin, "worker")
	w.cmd.Env, w.cmd.Stdout, w.cmd.Stderr = env, f, f
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	go func() {
		err := w.cmd.Wait()
		f.Close()
		w.exitedAt, w.err = time.Now(), err
		close(w.done)
	}()
	t.Cleanup(func() {
		if !w.exited() {
			_ = w.cmd.Process.Kill()
			<-w.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(w.log)
			t.Logf("--- %s log (last 8 KiB):\n%s", w.name, b[max(0, len(b)-8192):])
		}
	})
	eventually(t, 60*time.Second, name+" to be ready", func() bool {
		w.failIfExited(t, "before it was ready")
		resp, err := http.Get("http://" + w.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return w
}

func (w *drainWorker) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func (w *drainWorker) failIfExited(t *testing.T, when string) {
	t.Helper()
	if w.exited() {
		t.Fatalf("%s exited %s: %v", w.name, when, w.err)
	}
}

// terminate sends SIGTERM, as Kubernetes does to stop a pod, and returns when.
func (w *drainWorker) terminate(t *testing.T) time.Time {
	t.Helper()
	at := time.Now()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return at
}

// listening reports whether the worker's admin listener accepts connections.
func (w *drainWorker) listening() bool {
	c, err := net.DialTimeout("tcp", w.admin, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitExit waits until the worker has exited, failing the test (and killing it) if that
// takes more than within from since.
func (w *drainWorker) waitExit(t *testing.T, since time.Time, within time.Duration) {
	t.Helper()
	timer := time.NewTimer(time.Until(since.Add(within)))
	defer timer.Stop()
	select {
	case <-w.done:
	case <-timer.C:
		t.Fatalf("%s had not exited %s after SIGTERM", w.name, within)
	}
}

// is reports whether identity is this process's Temporal worker identity (the SDK's
// default, "pid@host@").
func (w *drainWorker) is(identity string) bool {
	return strings.HasPrefix(identity, strconv.Itoa(w.cmd.Process.Pid)+"@")
}

// checkLog fails the test if the worker's log reports a panic or a data race.
func (w *drainWorker) checkLog(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(w.log)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"DATA RACE", "panic"} {
		if i := strings.Index(string(b), bad); i >= 0 {
			t.Errorf("%s's log reports %q:\n%s", w.name, bad, b[max(0, i-512):min(len(b), i+2048)])
		}
	}
}

// instrumentLock is the test's hold on an instrument's row lock, which every step of
// matching takes first (LockInstrument in queries/book.sql), in a transaction of its own.
type instrumentLock struct {
	tx         pgx.Tx
	pid        int // the holding session's backend
	releasedAt time.Time
}

func (d *drainSystem) lockInstrument(t *testing.T, id int64) *instrumentLock {
	t.Helper()
	ctx := context.Background()
	tx, err := d.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l := &instrumentLock{tx: tx}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&l.pid); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM instruments WHERE id = $1 FOR UPDATE", id); err != nil {
		t.Fatal(err)
	}
	return l
}

// release ends the transaction, letting the step that waits for the lock go on.
func (l *instrumentLock) release(t *testing.T) {
	t.Helper()
	if err := l.tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.releasedAt = time.Now()
}

// blockedBy counts the worker sessions waiting for the test's lock.
func (d *drainSystem) blockedBy(t *testing.T, l *instrumentLock) int {
	t.Helper()
	var n int
	if err := d.pool.QueryRow(context.Background(), `
		SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1
		  AND $2::int = ANY (pg_blocking_pids(pid))`, roleWorker.sessionName(), l.pid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitBlocked waits until a worker session waits for the test's lock.
func (d *drainSystem) waitBlocked(t *testing.T, l *instrumentLock, what string, args ...any) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf(what, args...)+" to wait for the instrument's lock", func() bool {
		return d.blockedBy(t, l) > 0
	})
}

// groupMembers counts the members of the workers' Kafka consumer group.
func (d *drainSystem) groupMembers() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	groups, err := d.kafka.DescribeGroups(ctx, kafka.ConsumerGroup)
	if err != nil {
		return 0, err
	}
	g := groups[kafka.ConsumerGroup]
	return len(g.Members), g.Err
}

// wantEvents checks the order's event timeline.
func (d *drainSystem) wantEvents(t *testing.T, id int64, want ...string) {
	t.Helper()
	if got := d.eventTypes(t, id); !equal(got, want) {
		t.Errorf("order %d events = %v, want %v (one EXECUTING)", id, got, want)
	}
}

// outboxRows counts the order's messages not yet published.
func (d *drainSystem) outboxRows(t *testing.T, id int64) int {
	t.Helper()
	var n int
	if err := d.pool.QueryRow(context.Background(), "SELECT count(*) FROM outbox WHERE key = $1::bigint::text", id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// drainHistory is what an order's run history says of who ran it.
type drainHistory struct {
	executedBy []string // the identity of the worker of each workflow task that recorded an Execute step
	lostBy     []string // the identity of the worker of each workflow task that timed out or failed
}

func (d *drainSystem) runHistory(t *testing.T, id int64) drainHistory {
	t.Helper()
	var h drainHistory
	started := map[int64]string{} // WorkflowTaskStarted event id → worker identity
	var completedBy string        // the worker of the last completed workflow task
	for _, e := range d.history(t, d.get(t, id).WorkflowID).GetEvents() {
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
			started[e.GetEventId()] = e.GetWorkflowTaskStartedEventAttributes().GetIdentity()
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
			completedBy = e.GetWorkflowTaskCompletedEventAttributes().GetIdentity()
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
			h.lostBy = append(h.lostBy, started[e.GetWorkflowTaskTimedOutEventAttributes().GetStartedEventId()])
		case enumspb.EVENT_TYPE_WORKFLOW_TASK_FAILED:
			h.lostBy = append(h.lostBy, e.GetWorkflowTaskFailedEventAttributes().GetIdentity())
		case enumspb.EVENT_TYPE_MARKER_RECORDED:
			// A local activity's marker follows the completion of the workflow task that
			// ran it; its data names the activity.
			m := e.GetMarkerRecordedEventAttributes()
			var data struct{ ActivityType string }
			if m.GetMarkerName() != "LocalActivity" {
				continue
			}
			if err := converter.GetDefaultDataConverter().FromPayloads(m.GetDetails()["data"], &data); err != nil {
				t.Fatalf("local activity marker of order %d: %v", id, err)
			}
			if data.ActivityType == "Execute" {
				h.executedBy = append(h.executedBy, completedBy)
			}
		}
	}
	return h
}
