package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orderflow/devstack"
)

// `orderflow cluster` runs the production topology, every part a process of its own: the
// Temporal server (go.temporal.io/server) on PostgreSQL, its UI, the broker, two APIs
// and two workers. An order placed through one API replica executes, is read and
// cancelled through the other, the auditor finds nothing on that topology, and Ctrl-C
// stops every process.
func TestTheClusterRunsTheProductionTopologyEndToEnd(t *testing.T) {
	t.Parallel()
	if _, err := devstack.ModuleBin("temporal-server"); err != nil {
		t.Fatal(err) // make test builds it (tools-cluster)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "orderflow")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "cluster")
	env := append(os.Environ(), "CLUSTER_DATA_DIR="+data, "LOG_LEVEL=warn")
	for _, name := range []string{"CLUSTER_PG_PORT", "CLUSTER_UI_PORT", "CLUSTER_KAFKA_PORT"} {
		env = append(env, fmt.Sprintf("%s=%d", name, freePortT(t)))
	}
	// The Temporal server takes its port and the next 767, the APIs two and the admin
	// listeners four: fixed ranges, below the kernel's ephemeral ports (32768 on), where
	// no outgoing connection can be holding one.
	slot := os.Getpid() % 400
	env = append(env, fmt.Sprintf("CLUSTER_TEMPORAL_PORT=%d", 20000+slot*20),
		fmt.Sprintf("CLUSTER_API_PORT=%d", 29000+slot*4), fmt.Sprintf("CLUSTER_ADMIN_PORT=%d", 30600+slot*4))
	var out bytes.Buffer
	cmd := exec.Command(bin, "cluster")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Signal(os.Interrupt)
			<-exited
		}
		if t.Failed() { // each part's last words
			logs, _ := filepath.Glob(filepath.Join(data, "logs", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("--- %s (last 2 KiB):\n%s", filepath.Base(l), b[max(0, len(b)-2048):])
			}
		}
	})
	stackEnv := filepath.Join(data, stackEnvFile)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, err := os.Stat(stackEnv); err == nil {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("orderflow cluster exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster was not up within 3 minutes:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	vars, err := readEnvFile(stackEnv)
	if err != nil {
		t.Fatal(err)
	}
	apis := strings.Split(vars["API_ADDRS"], ",")
	if len(apis) != 2 {
		t.Fatalf("API_ADDRS = %q, want two replicas", vars["API_ADDRS"])
	}
	// The operators' commands find the cluster through its data folder.
	cli := func(args ...string) string {
		t.Helper()
		var b bytes.Buffer
		if err := run(context.Background(), args, func(k string) string { return map[string]string{"DATA_DIR": data}[k] }, &b); err != nil {
			t.Fatalf("orderflow %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(b.String())
	}
	seller := cli("keys", "create", "--user", "1", "--scopes", "read,trade")
	buyer := cli("keys", "create", "--user", "2", "--scopes", "read,trade")
	callKey := func(api, key, method, path, body, idem string) (int, orderView) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+api+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", cmp.Or(idem, strconv.FormatInt(time.Now().UnixNano(), 36)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v orderView
		_ = json.NewDecoder(resp.Body).Decode(&v)
		return resp.StatusCode, v
	}
	call := func(api, key, method, path, body string) (int, orderView) {
		t.Helper()
		return callKey(api, key, method, path, body, "")
	}
	waitStatus := func(api, key string, id int64, want string) orderView {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			if _, v := call(api, key, http.MethodGet, fmt.Sprintf("/api/v1/orders/%d", id), ""); v.OrderStatus == want {
				return v
			}
			if time.Now().After(deadline) {
				t.Fatalf("order %d did not reach %s within a minute", id, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	code, sell := call(apis[0], seller, http.MethodPost, "/api/v1/orders", `{"instrumentId":101,"orderType":"SELL","orderKind":"LIMIT","price":"100","quantity":10}`)
	if code != http.StatusCreated {
		t.Fatalf("place on API 1: %d", code)
	}
	waitStatus(apis[1], seller, sell.OrderID, "EXECUTING")
	code, buy := call(apis[1], buyer, http.MethodPost, "/api/v1/orders", `{"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":4}`)
	if code != http.StatusCreated {
		t.Fatalf("place on API 2: %d", code)
	}
	waitStatus(apis[0], buyer, buy.OrderID, "EXECUTED")
	waitStatus(apis[0], seller, sell.OrderID, "PARTIALLY_FILLED")
	if code, v := call(apis[1], seller, http.MethodPost, fmt.Sprintf("/api/v1/orders/%d/cancel", sell.OrderID), ""); code != http.StatusOK || v.OrderStatus != "PARTIALLY_CANCELLED" {
		t.Errorf("cancel on API 2: %d %s, want 200 PARTIALLY_CANCELLED", code, v.OrderStatus)
	}
	// A client retrying through the other replica gets its order, not a second one.
	body := `{"instrumentId":102,"orderType":"BUY","orderKind":"LIMIT","price":"5","quantity":1}`
	code, first := callKey(apis[0], buyer, http.MethodPost, "/api/v1/orders", body, "cluster-replay")
	code2, again := callKey(apis[1], buyer, http.MethodPost, "/api/v1/orders", body, "cluster-replay")
	if code != http.StatusCreated || code2 != http.StatusCreated || again != first {
		t.Errorf("a replay on the other replica: %d %+v then %d %+v, want the first answer twice", code, first, code2, again)
	}
	waitStatus(apis[1], buyer, first.OrderID, "EXECUTING")
	// An operator halts an instrument: what reaches matching for it is refused, on any
	// worker.
	cli("instruments", "halt", "103")
	_, halted := call(apis[0], buyer, http.MethodPost, "/api/v1/orders", `{"instrumentId":103,"orderType":"BUY","orderKind":"MARKET","quantity":1}`)
	if v := waitStatus(apis[1], buyer, halted.OrderID, "REJECTED"); v.Reason != "INSTRUMENT_HALTED" {
		t.Errorf("an order for the halted instrument: %s %s, want REJECTED INSTRUMENT_HALTED", v.OrderStatus, v.Reason)
	}
	cli("instruments", "resume", "103")
	if report := cli("audit"); !strings.Contains(report, "no violations") {
		t.Errorf("orderflow audit on the cluster:\n%s", report)
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("orderflow cluster after Ctrl-C: %v\n%s", err, out.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("orderflow cluster did not stop within 2 minutes of Ctrl-C")
	}
	if leftover, _ := exec.Command("pgrep", "-f", data).Output(); len(leftover) > 0 {
		t.Errorf("processes left running after Ctrl-C: %s", leftover)
	}
}

func freePortT(t *testing.T) int {
	t.Helper()
	p, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
