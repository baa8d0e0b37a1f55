package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/orderflow/orderflow/devstack"
)

// syncBuffer is a bytes.Buffer safe for a process's log and a test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newCA makes a CA in a folder of the test's.
func newCA(t *testing.T, name string) *devstack.CA {
	t.Helper()
	ca, err := devstack.NewCA(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *devstack.CA, name string, hosts ...string) (string, string) {
	t.Helper()
	cert, key, err := ca.Issue(name, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// eventually polls cond until it holds, failing the test after within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The API serves TLS with the configured certificate and, when the files are renewed,
// serves the new one without a restart; a renewal that does not load leaves the old one
// served.
func TestTheAPIServesTLSAndAReneweddCertificateWithoutARestart(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	ca := newCA(t, "api-ca")
	certFile, keyFile := issue(t, ca, "api", "127.0.0.1")
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for k, v := range s.env {
		env[k] = v
	}
	env["HTTP_ADDR"] = "127.0.0.1:" + strconv.Itoa(port)
	env["METRICS_ADDR"] = "127.0.0.1:" + strconv.Itoa(admin)
	env["HTTP_TLS_CERT_FILE"], env["HTTP_TLS_KEY_FILE"] = certFile, keyFile
	env["LOG_LEVEL"] = "info"
	var log syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"api"}, func(k string) string { return env[k] }, &log) }()
	t.Cleanup(func() { cancel(); <-done })

	base := "https://" + env["HTTP_ADDR"]
	// No keep-alive: every look is a handshake, which is when the certificate is chosen.
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	served := func() string { // the serial of the certificate served, "" if none
		resp, err := hc.Get(base + "/healthz")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.TLS == nil || resp.StatusCode != http.StatusOK {
			return ""
		}
		if resp.Header.Get("Strict-Transport-Security") == "" {
			t.Error("no HSTS over TLS")
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	eventually(t, 30*time.Second, "the API to serve TLS", func() bool { return served() != "" })
	first := served()
	if resp, err := http.Get("http://" + env["HTTP_ADDR"] + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("the TLS listener answered plain HTTP with 200")
		}
	}

	issue(t, ca, "api", "127.0.0.1") // the renewal, in the same files
	eventually(t, 10*time.Second, "the renewed certificate to be served", func() bool { s := served(); return s != "" && s != first })
	renewed := served()

	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the broken renewal to be noticed", func() bool {
		return served() != "" && strings.Contains(log.String(), "does not load")
	})
	if got := served(); got != renewed {
		t.Errorf("after a broken renewal the API serves %q, want the certificate it had, %s", got, renewed)
	}
}

// With sslmode=verify-full and the CA as sslrootcert, OrderFlow connects to a PostgreSQL
// whose certificate that CA issued for its address, over TLS; with another CA, or a
// certificate for another host, it refuses to.
func TestPostgresVerifyFullWithTheDeploymentsCA(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "pg-ca")
	certFile, keyFile := issue(t, ca, "pg", "127.0.0.1", "localhost")
	ctx := context.Background()
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresOptions{Dir: filepath.Join(t.TempDir(), "pg"), TLSCertFile: certFile, TLSKeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	url := func(mode, root string) string {
		return strings.Replace(pg.URL("orderflow"), "sslmode=disable", "sslmode="+mode+"&sslrootcert="+root, 1)
	}
	verified := url("verify-full", ca.CertFile)
	if err := run(ctx, []string{"migrate"}, func(k string) string { return map[string]string{"DATABASE_URL": verified}[k] }, io.Discard); err != nil {
		t.Fatalf("orderflow migrate with verify-full: %v", err)
	}
	conn, err := pgx.Connect(ctx, verified)
	if err != nil {
		t.Fatal(err)
	}
	var ssl bool
	if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Errorf("the session is not over TLS: %v, %v", ssl, err)
	}
	conn.Close(ctx)

	other := newCA(t, "other-ca")
	if err := run(ctx, []string{"migrate"}, func(k string) string {
		return map[string]string{"DATABASE_URL": url("verify-full", other.CertFile)}[k]
	}, io.Discard); err == nil {
		t.Error("verify-full against another CA connected")
	}
	// A certificate of the right CA for another host.
	pg2dir := filepath.Join(t.TempDir(), "pg")
	wrongCert, wrongKey := issue(t, ca, "elsewhere", "db.elsewhere.test")
	pg2, err := devstack.StartPostgres(ctx, devstack.PostgresOptions{Dir: pg2dir, TLSCertFile: wrongCert, TLSKeyFile: wrongKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg2.Stop() })
	wrongHost := strings.Replace(pg2.URL("orderflow"), "sslmode=disable", "sslmode=verify-full&sslrootcert="+ca.CertFile, 1)
	if _, err := pgx.Connect(ctx, wrongHost); err == nil {
		t.Error("verify-full accepted a certificate for another host")
	}
}

// Kafka over TLS with SASL SCRAM: the process's clients connect with the configured CA
// and credentials, and not with a wrong password or without TLS.
func TestKafkaOverTLSWithSCRAM(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "kafka-ca")
	certFile, keyFile := issue(t, ca, "kafka", "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	k, err := devstack.StartKafka(devstack.KafkaOptions{
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, SCRAMUser: "orderflow", SCRAMPassword: "s3cret",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	passwordFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(passwordFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"KAFKA_BROKERS": strings.Join(k.Addrs(), ","), "KAFKA_TLS_CA_FILE": ca.CertFile,
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USER": "orderflow", "KAFKA_SASL_PASSWORD_FILE": passwordFile,
	}
	ping := func(change map[string]string) error {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range change {
			env[k] = v
		}
		cfg, err := loadConfig(func(k string) string { return env[k] })
		if err != nil {
			return err
		}
		c, err := kgo.NewClient(append(cfg.kafkaOptions(), kgo.RequestRetries(0))...)
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.Ping(ctx)
	}
	if err := ping(nil); err != nil {
		t.Fatalf("TLS and SCRAM as configured: %v", err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("guess"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ping(map[string]string{"KAFKA_SASL_PASSWORD_FILE": wrong}); err == nil {
		t.Error("a wrong password connected")
	}
	if err := ping(map[string]string{"KAFKA_TLS_CA_FILE": newCA(t, "other").CertFile}); err == nil {
		t.Error("a broker whose certificate the configured CA did not issue was trusted")
	}
}

// frontend is a Temporal frontend's GetSystemInfo (all a client's dial needs) behind
// mutual TLS, recording the credentials its callers present.
type frontend struct {
	workflowservice.UnimplementedWorkflowServiceServer
	mu      sync.Mutex
	callers []string // "<client certificate CN> <authorization>"
}

func (f *frontend) GetSystemInfo(ctx context.Context, _ *workflowservice.GetSystemInfoRequest) (*workflowservice.GetSystemInfoResponse, error) {
	var cn string
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			cn = info.State.PeerCertificates[0].Subject.CommonName
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.callers = append(f.callers, cn+" "+strings.Join(md.Get("authorization"), ","))
	f.mu.Unlock()
	return &workflowservice.GetSystemInfoResponse{Capabilities: &workflowservice.GetSystemInfoResponse_Capabilities{}}, nil
}

// The Temporal client connects over mutual TLS with the configured CA and client
// certificate, sending the API key when one is set; without its certificate, or trusting
// another CA, it does not connect.
func TestTemporalOverMutualTLSWithAnAPIKey(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "temporal-ca")
	serverCert, serverKey := issue(t, ca, "frontend", "127.0.0.1")
	clientCert, clientKey := issue(t, ca, "orderflow-worker", "orderflow-worker")
	cert, err := tls.LoadX509KeyPair(serverCert, serverKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca.CertFile)
	pool.AppendCertsFromPEM(pem)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})))
	f := &frontend{}
	workflowservice.RegisterWorkflowServiceServer(srv, f)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	keyFile := filepath.Join(t.TempDir(), "temporal-api-key")
	if err := os.WriteFile(keyFile, []byte("tk-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"TEMPORAL_ADDRESS": lis.Addr().String(), "TEMPORAL_TLS_CA_FILE": ca.CertFile,
		"TEMPORAL_TLS_CERT_FILE": clientCert, "TEMPORAL_TLS_KEY_FILE": clientKey, "TEMPORAL_API_KEY_FILE": keyFile,
	}
	dial := func(change map[string]string) error {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range change {
			if v == "" {
				delete(env, k)
			} else {
				env[k] = v
			}
		}
		cfg, err := loadConfig(func(k string) string { return env[k] })
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := client.DialContext(ctx, cfg.temporalOptions())
		if err != nil {
			return err
		}
		c.Close()
		return nil
	}
	if err := dial(nil); err != nil {
		t.Fatalf("mutual TLS with an API key: %v", err)
	}
	f.mu.Lock()
	got := append([]string(nil), f.callers...)
	f.mu.Unlock()
	if len(got) == 0 || got[0] != "orderflow-worker Bearer tk-123" {
		t.Errorf("the frontend saw %q, want the client certificate and the API key", got)
	}
	if err := dial(map[string]string{"TEMPORAL_TLS_CERT_FILE": "", "TEMPORAL_TLS_KEY_FILE": ""}); err == nil {
		t.Error("connected without the client certificate")
	}
	if err := dial(map[string]string{"TEMPORAL_TLS_CA_FILE": newCA(t, "other").CertFile}); err == nil {
		t.Error("trusted a frontend whose certificate the configured CA did not issue")
	}
	if err := dial(map[string]string{"TEMPORAL_API_KEY": "tk-123"}); err == nil || !strings.Contains(err.Error(), "both set") {
		t.Errorf("TEMPORAL_API_KEY and TEMPORAL_API_KEY_FILE both set: %v, want a configuration error", err)
	}
}
