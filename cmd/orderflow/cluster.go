package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/workflows"
)

// clusterPorts are where `orderflow cluster` puts its services (CLUSTER_*_PORT), apart
// from `orderflow dev`'s so that both can run on one machine.
type clusterPorts struct {
	pg, temporal, ui, kafka, api, admin int
}

// runCluster is `orderflow cluster` (make cluster): the production topology on one
// machine, every part a process of its own with its own log under CLUSTER_DATA_DIR/logs:
// PostgreSQL; the Temporal server (built from go.temporal.io/server) with persistence and
// visibility on that PostgreSQL and 4 history shards; the Temporal UI server; the Kafka-
// protocol broker (`orderflow broker`); two `orderflow api` replicas and two `orderflow
// worker` processes. Ctrl-C stops them all, in reverse order.
func runCluster(ctx context.Context, cfg Config, getenv func(string) string, logger *slog.Logger, stdout io.Writer) error {
	dataDir, err := filepath.Abs(cmp.Or(getenv("CLUSTER_DATA_DIR"), ".orderflow-cluster"))
	if err != nil {
		return err
	}
	ports := clusterPorts{pg: 5434, temporal: 17233, ui: 18233, kafka: 19092, api: 18080, admin: 19190}
	for name, p := range map[string]*int{
		"CLUSTER_PG_PORT": &ports.pg, "CLUSTER_TEMPORAL_PORT": &ports.temporal, "CLUSTER_UI_PORT": &ports.ui,
		"CLUSTER_KAFKA_PORT": &ports.kafka, "CLUSTER_API_PORT": &ports.api, "CLUSTER_ADMIN_PORT": &ports.admin,
	} {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > 65000 {
				return fmt.Errorf("%s must be a port number", name)
			}
			*p = n
		}
	}
	bins := map[string]string{}
	for _, b := range []struct{ env, name string }{
		{"TEMPORAL_SERVER", "temporal-server"}, {"TEMPORAL_SQL_TOOL", "temporal-sql-tool"},
		{"TEMPORAL_UI_SERVER", "temporal-ui-server"}, {"TEMPORAL_SCHEMA_DIR", "temporal-schema"},
	} {
		if bins[b.name] = getenv(b.env); bins[b.name] == "" {
			if bins[b.name], err = devstack.ModuleBin(b.name); err != nil {
				return fmt.Errorf("%w, or set %s", err, b.env)
			}
		}
	}
	self := getenv("ORDERFLOW_BIN")
	if self == "" {
		if self, err = os.Executable(); err != nil {
			return err
		}
	}
	unlock, err := devstack.LockDataDir(dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	logs := filepath.Join(dataDir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}

	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresOptions{Dir: filepath.Join(dataDir, "pg"), Port: ports.pg})
	if err != nil {
		return err
	}
	stops = append(stops, func() {
		if err := pg.Stop(); err != nil {
			logger.Error("stop postgres", "error", err)
		}
	})
	ts, err := devstack.StartTemporalServer(ctx, devstack.TemporalServerOptions{
		ServerPath: bins["temporal-server"], SQLToolPath: bins["temporal-sql-tool"], SchemaDir: bins["temporal-schema"],
		Postgres: pg, Dir: logs, BasePort: ports.temporal, Namespace: cfg.TemporalNamespace,
		SearchAttributes: workflows.SearchAttributeTypes(),
	})
	if err != nil {
		return err
	}
	children := []*devstack.Child{ts.Child}
	stops = append(stops, func() { stopChild(logger, ts.Child, 30*time.Second) })
	uiURL := fmt.Sprintf("http://127.0.0.1:%d", ports.ui)
	ui, err := devstack.StartTemporalUI(devstack.TemporalUIOptions{
		Path: bins["temporal-ui-server"], Dir: logs, Port: ports.ui, TemporalAddress: ts.HostPort, Namespace: cfg.TemporalNamespace,
	})
	if err != nil {
		return err
	}
	children = append(children, ui)
	stops = append(stops, func() { stopChild(logger, ui, 10*time.Second) })

	kafkaAddr := fmt.Sprintf("127.0.0.1:%d", ports.kafka)
	env := append(os.Environ(),
		"DATABASE_URL="+pg.URL("orderflow"), "TEMPORAL_ADDRESS="+ts.HostPort, "KAFKA_BROKERS="+kafkaAddr,
		"TEMPORAL_UI_URL="+uiURL, "DATA_DIR="+dataDir, "DEV_KAFKA_PORT="+strconv.Itoa(ports.kafka), "LOG_FORMAT=json")
	start := func(name string, extra ...string) error {
		args := strings.Fields(name)
		c, err := devstack.StartChild(strings.ReplaceAll(name, " ", "-"), filepath.Join(logs, strings.ReplaceAll(name, " ", "-")+".log"),
			append(append([]string{}, env...), extra...), self, args[0])
		if err != nil {
			return err
		}
		children = append(children, c)
		stops = append(stops, func() { stopChild(logger, c, cfg.ShutdownTimeout+5*time.Second) })
		return nil
	}
	if err := start("broker"); err != nil {
		return err
	}
	clusterCfg := cfg
	clusterCfg.DatabaseURL = pg.URL("orderflow")
	if err := runMigrate(ctx, clusterCfg); err != nil {
		return err
	}
	summary := []string{"OrderFlow cluster is running (logs in " + logs + "):",
		fmt.Sprintf("  PostgreSQL       %s", pg.URL("orderflow")),
		fmt.Sprintf("  Temporal server  %s (persistence and visibility on PostgreSQL, 4 history shards)", ts.HostPort),
		fmt.Sprintf("  Temporal UI      %s", uiURL),
		fmt.Sprintf("  Kafka broker     %s", kafkaAddr)}
	var apis []string
	for i := range 2 {
		addr := fmt.Sprintf("127.0.0.1:%d", ports.api+i)
		apis = append(apis, addr)
		if err := start(fmt.Sprintf("api %d", i+1), "HTTP_ADDR="+addr, fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", ports.admin+i)); err != nil {
			return err
		}
		summary = append(summary, fmt.Sprintf("  API %d            http://%s (admin 127.0.0.1:%d)", i+1, addr, ports.admin+i))
	}
	for i := range 2 {
		if err := start(fmt.Sprintf("worker %d", i+1), fmt.Sprintf("METRICS_ADDR=127.0.0.1:%d", ports.admin+2+i)); err != nil {
			return err
		}
		summary = append(summary, fmt.Sprintf("  worker %d         admin 127.0.0.1:%d", i+1, ports.admin+2+i))
	}
	// Up means serving: every API and worker answers its readiness check.
	for i, c := range children[len(children)-4:] {
		url := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports.admin+i)
		if i < 2 {
			url = "http://" + apis[i] + "/readyz"
		}
		if err := waitReadyz(ctx, url, c); err != nil {
			return err
		}
	}
	if cfg.AuthMode != authTrustBody {
		keys, err := ensureDevKeys(ctx, clusterCfg, dataDir)
		if err != nil {
			return err
		}
		summary = append(summary, fmt.Sprintf("  Keys             demo user %d: %s; operator: %s (in %s)",
			devDemoUser, keys[devDemoKeyVar], keys[devOperatorKeyVar], filepath.Join(dataDir, devKeysFile)))
	}
	removeStackEnv, err := writeStackEnv(dataDir, map[string]string{
		"DATABASE_URL": pg.URL("orderflow"), "TEMPORAL_ADDRESS": ts.HostPort, "TEMPORAL_NAMESPACE": cfg.TemporalNamespace,
		"KAFKA_BROKERS": kafkaAddr, "HTTP_ADDR": apis[0], "TEMPORAL_UI_URL": uiURL, "API_ADDRS": strings.Join(apis, ","),
	})
	if err != nil {
		return err
	}
	defer removeStackEnv()
	fmt.Fprintln(stdout, strings.Join(append(summary, "Press Ctrl-C to stop."), "\n"))

	// Until Ctrl-C, or until a part dies: a cluster missing a part is not the topology.
	exited := make(chan *devstack.Child, len(children))
	for _, c := range children {
		go func() { <-c.Done(); exited <- c }()
	}
	select {
	case <-ctx.Done():
		return nil
	case c := <-exited:
		return fmt.Errorf("%s exited: %v; see %s", c.Name, c.Err(), c.Log)
	}
}

// waitReadyz waits up to two minutes for url to answer 200, failing early if c exits.
func waitReadyz(ctx context.Context, url string, c *devstack.Child) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		if healthcheck(ctx, url) == nil {
			return nil
		}
		select {
		case <-c.Done():
			return fmt.Errorf("%s exited while starting: %v; see %s", c.Name, c.Err(), c.Log)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s within 2 minutes; see %s", c.Name, url, c.Log)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stopChild stops c, logging what went wrong.
func stopChild(logger *slog.Logger, c *devstack.Child, grace time.Duration) {
	if err := c.Stop(grace); err != nil && !errors.Is(err, context.Canceled) {
		logger.Error("stop", "process", c.Name, "error", err)
	}
}
