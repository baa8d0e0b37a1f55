package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TemporalServerOptions configures a Temporal server (the production server, not the dev
// server) with its persistence and visibility on PostgreSQL.
type TemporalServerOptions struct {
	ServerPath, SQLToolPath string // the binaries: temporal-server, temporal-sql-tool
	SchemaDir               string // the server module's schema/postgresql/v12
	Postgres                *Postgres
	Dir                     string // its config and log
	Shards                  int    // history shards (default 4)
	// BasePort: the frontend's gRPC port; the other services' ports follow it (0: 7233).
	BasePort         int
	Namespace        string
	SearchAttributes map[string]string
}

// TemporalServer is a running Temporal server process.
type TemporalServer struct {
	HostPort string
	*Child
}

// temporalConfig is the server's configuration: every service in one process, each on
// its own ports, persistence and visibility in two PostgreSQL databases.
var temporalConfig = template.Must(template.New("config").Parse(`log:
  stdout: true
  level: warn
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: {{.Shards}}
  datastores:
    default:
      sql:
        pluginName: postgres12
        databaseName: temporal
        connectAddr: "{{.PG}}"
        connectProtocol: tcp
        user: postgres
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: 1h
    visibility:
      sql:
        pluginName: postgres12
        databaseName: temporal_visibility
        connectAddr: "{{.PG}}"
        connectProtocol: tcp
        user: postgres
        maxConns: 10
        maxIdleConns: 10
        maxConnLifetime: 1h
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
  metrics:
    prometheus:
      framework: tally
      timerType: histogram
      listenAddress: "127.0.0.1:{{.Metrics}}"
services:
{{- range .Services}}
  {{.Name}}:
    rpc:
      grpcPort: {{.GRPC}}
      membershipPort: {{.Membership}}
      bindOnLocalHost: true
{{- if .HTTP}}
      httpPort: {{.HTTP}}
{{- end}}
{{- end}}
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "127.0.0.1:{{.Frontend}}"
dcRedirectionPolicy:
  policy: noop
`))

type temporalService struct {
	Name                   string
	GRPC, Membership, HTTP int
}

// StartTemporalServer sets up the server's two databases on opts.Postgres (created and
// migrated with the SQL tool the first time, brought up to date after), starts the
// server and waits until its frontend answers, then makes sure the namespace and the
// search attributes exist.
func StartTemporalServer(ctx context.Context, opts TemporalServerOptions) (*TemporalServer, error) {
	if opts.Shards == 0 {
		opts.Shards = 4
	}
	if opts.BasePort == 0 {
		opts.BasePort = 7233
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("devstack: temporal server: %w", err)
	}
	host, port := "127.0.0.1", strconv.Itoa(opts.Postgres.port)
	for _, db := range []struct{ name, schema string }{{"temporal", "temporal"}, {"temporal_visibility", "visibility"}} {
		if err := opts.Postgres.CreateDatabase(ctx, db.name); err != nil {
			return nil, err
		}
		base := []string{"--plugin", "postgres12", "--ep", host, "-p", port, "-u", "postgres", "--db", db.name}
		for _, args := range [][]string{
			// setup-schema -v 0.0 makes the version table; it is a no-op once there.
			append(append([]string{}, base...), "setup-schema", "-v", "0.0"),
			append(append([]string{}, base...), "update-schema", "-d", filepath.Join(opts.SchemaDir, db.schema, "versioned")),
		} {
			if out, err := exec.CommandContext(ctx, opts.SQLToolPath, args...).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("devstack: temporal-sql-tool %s: %w: %s", strings.Join(args, " "), err, out)
			}
		}
	}
	p := opts.BasePort
	services := []temporalService{
		{"frontend", p, p + 700, p + 10}, {"history", p + 1, p + 701, 0},
		{"matching", p + 2, p + 702, 0}, {"worker", p + 6, p + 706, 0},
	}
	cfgPath := filepath.Join(opts.Dir, "temporal.yaml")
	f, err := os.Create(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("devstack: temporal server: %w", err)
	}
	err = temporalConfig.Execute(f, map[string]any{
		"Shards": opts.Shards, "PG": net.JoinHostPort(host, port), "Metrics": p + 767, "Services": services, "Frontend": p,
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("devstack: temporal server config: %w", err)
	}
	child, err := StartChild("temporal server", filepath.Join(opts.Dir, "temporal-server.log"), nil,
		opts.ServerPath, "--config-file", cfgPath, "--allow-no-auth", "start")
	if err != nil {
		return nil, err
	}
	s := &TemporalServer{HostPort: net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), Child: child}
	if err := s.ready(ctx, opts); err != nil {
		_ = s.Stop(30 * time.Second)
		return nil, err
	}
	return s, nil
}

// ready waits for the frontend, then registers the namespace and search attributes.
func (s *TemporalServer) ready(ctx context.Context, opts TemporalServerOptions) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var c client.Client
	for {
		var err error
		if c, err = client.DialContext(ctx, client.Options{HostPort: s.HostPort, Logger: tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))}); err == nil {
			break
		}
		select {
		case <-s.Done():
			return fmt.Errorf("devstack: the temporal server exited: %v (log %s)", s.Err(), s.Log)
		case <-ctx.Done():
			return fmt.Errorf("devstack: the temporal server did not answer: %w (log %s)", err, s.Log)
		case <-time.After(200 * time.Millisecond):
		}
	}
	defer c.Close()
	_, err := c.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
		Namespace: opts.Namespace, WorkflowExecutionRetentionPeriod: durationpb.New(72 * time.Hour),
	})
	var exists *serviceerror.NamespaceAlreadyExists
	if err != nil && !errors.As(err, &exists) {
		return fmt.Errorf("devstack: register namespace %s: %w", opts.Namespace, err)
	}
	attrs := map[string]enums.IndexedValueType{}
	for name, typ := range opts.SearchAttributes {
		v, ok := enums.IndexedValueType_shorthandValue[typ]
		if !ok {
			return fmt.Errorf("devstack: search attribute %s: unknown type %q", name, typ)
		}
		attrs[name] = enums.IndexedValueType(v)
	}
	if len(attrs) == 0 {
		return nil
	}
	for {
		_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: opts.Namespace, SearchAttributes: attrs})
		// Adding attributes that exist is refused as an invalid argument ("already
		// exists"): the state wanted.
		if err == nil || strings.Contains(err.Error(), "already exists") {
			break
		}
		// A namespace just registered takes a moment to reach every service.
		select {
		case <-ctx.Done():
			return fmt.Errorf("devstack: add search attributes: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	return s.awaitSearchAttributes(ctx, c, opts)
}

// awaitSearchAttributes waits until the frontend accepts a run carrying the search
// attributes: it learns of new ones when it next reloads the namespace (seconds later),
// and until then refuses such starts, which the consumer would dead-letter.
func (s *TemporalServer) awaitSearchAttributes(ctx context.Context, c client.Client, opts TemporalServerOptions) error {
	var updates []temporal.SearchAttributeUpdate
	for name, typ := range opts.SearchAttributes {
		switch typ {
		case "Int":
			updates = append(updates, temporal.NewSearchAttributeKeyInt64(name).ValueSet(0))
		case "Keyword":
			updates = append(updates, temporal.NewSearchAttributeKeyKeyword(name).ValueSet("probe"))
		case "Bool":
			updates = append(updates, temporal.NewSearchAttributeKeyBool(name).ValueSet(false))
		}
	}
	for i := 0; ; i++ {
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: fmt.Sprintf("devstack-search-attribute-probe-%d-%d", time.Now().UnixNano(), i), TaskQueue: "devstack-probe",
			TypedSearchAttributes: temporal.NewSearchAttributes(updates...),
		}, "SearchAttributeProbe")
		if err == nil {
			return c.TerminateWorkflow(ctx, run.GetID(), run.GetRunID(), "probe")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devstack: the search attributes were not usable in time: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// TemporalUIOptions configures the Temporal UI server.
type TemporalUIOptions struct {
	Path            string // the temporal-ui-server binary
	Dir             string // its config and log
	Port            int
	TemporalAddress string
	Namespace       string
}

// StartTemporalUI starts the Temporal UI server against a frontend.
func StartTemporalUI(opts TemporalUIOptions) (*Child, error) {
	cfgDir := filepath.Join(opts.Dir, "ui-config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, fmt.Errorf("devstack: temporal ui: %w", err)
	}
	cfg := fmt.Sprintf("temporalGrpcAddress: %q\nport: %d\nenableUi: true\ndefaultNamespace: %q\ncors:\n  allowOrigins: []\n",
		opts.TemporalAddress, opts.Port, opts.Namespace)
	if err := os.WriteFile(filepath.Join(cfgDir, "base.yaml"), []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("devstack: temporal ui: %w", err)
	}
	return StartChild("temporal ui", filepath.Join(opts.Dir, "temporal-ui.log"), nil,
		opts.Path, "--root", opts.Dir, "--config", "ui-config", "--env", "cluster", "start")
}
