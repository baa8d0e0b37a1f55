package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/devstack"
)

// `orderflow keys create` prints the key alone, so a script can capture it; the key
// works against the running API at once, is listed without its secret, and is refused
// after `orderflow keys revoke`.
func TestKeysCreatePrintsAKeyThatWorksUntilRevoked(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	key := strings.TrimSpace(s.command(t, "keys", "create", "--user", "31", "--scopes", "read,trade", "--name", "desk 31"))
	id, _, err := auth.ParseKey(key)
	if err != nil {
		t.Fatalf("keys create printed %q, not a key alone: %v", key, err)
	}
	status := func() int {
		req, _ := http.NewRequest(http.MethodGet, s.baseURL+"/api/v1/orders", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status(); got != http.StatusOK {
		t.Fatalf("the new key: %d, want 200", got)
	}
	list := s.command(t, "keys", "list", "--user", "31")
	if !strings.Contains(list, id) || !strings.Contains(list, "read,trade") || strings.Contains(list, key) {
		t.Errorf("keys list:\n%s\nwant the key's id and scopes, never the key", list)
	}
	// The whole key, pasted by mistake, revokes it by its id, and is not echoed.
	if out := s.command(t, "keys", "revoke", key); !strings.Contains(out, "revoked") || !strings.Contains(out, id) || strings.Contains(out, key) {
		t.Errorf("keys revoke: %q", out)
	}
	// The CLI revokes in the database; the API, which remembers a key it found valid for
	// AUTH_KEY_CACHE_TTL (5s by default), refuses it once that has passed.
	eventually(t, 10*time.Second, "the revoked key to be refused with 401", func() bool { return status() == http.StatusUnauthorized })
	for _, args := range [][]string{
		{"keys", "create", "--scopes", "read"},
		{"keys", "create", "--user", "31", "--scopes", "write"},
		{"keys", "create", "--user", "31"},
		{"keys", "revoke"},
		{"keys", "revoke", "nosuchkey"},
		{"keys", "rotate"},
	} {
		err := run(context.Background(), args, func(k string) string { return s.env[k] }, io.Discard)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("orderflow %s: %v, want one sentence", strings.Join(args, " "), err)
		}
	}
}

// The dev stack's keys are made once, kept with its data (readable by its owner alone),
// and made again when the database no longer knows them.
func TestTheDevKeysAreMadeOnceAndKeptWithTheData(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	dir := t.TempDir()
	cfg := Config{DatabaseURL: s.dbURL, DBMaxConns: 2}
	first, err := ensureDevKeys(context.Background(), cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, devKeysFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("keys file: %v, %v; want mode 0600", info, err)
	}
	again, err := ensureDevKeys(context.Background(), cfg, dir)
	if err != nil || again[devDemoKeyVar] != first[devDemoKeyVar] || again[devOperatorKeyVar] != first[devOperatorKeyVar] {
		t.Fatalf("a second start changed the keys: %v", err)
	}
	id, _, _ := auth.ParseKey(first[devDemoKeyVar])
	s.command(t, "keys", "revoke", id)
	renewed, err := ensureDevKeys(context.Background(), cfg, dir)
	if err != nil || renewed[devDemoKeyVar] == first[devDemoKeyVar] || renewed[devOperatorKeyVar] != first[devOperatorKeyVar] {
		t.Fatalf("after revoking the demo key: %v; want a new demo key and the same operator key", err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, devKeysFile))
	if !strings.Contains(string(data), fmt.Sprintf("%s=%s", devDemoKeyVar, renewed[devDemoKeyVar])) {
		t.Errorf("the file does not hold the new key:\n%s", data)
	}
}

// `orderflow api` with AUTH_MODE=trust-body warns at start and serves the original
// web client's requests, which carry a userId and no credential.
func TestTrustBodyModeWarnsAndServesTheOriginalClient(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	env := map[string]string{}
	for k, v := range s.env {
		env[k] = v
	}
	for _, k := range []string{"HTTP_ADDR", "METRICS_ADDR"} {
		port, err := devstack.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		env[k] = "127.0.0.1:" + strconv.Itoa(port)
	}
	env["AUTH_MODE"] = "trust-body"
	var log syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"api"}, func(k string) string { return env[k] }, &log) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + env["HTTP_ADDR"]
	waitReady(t, base, done, 30*time.Second)
	if !strings.Contains(log.String(), "AUTH_MODE=trust-body") || !strings.Contains(log.String(), "WARN") {
		t.Errorf("no warning at start:\n%s", log.String())
	}
	inst := s.newInstrument(t)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/orders",
		strings.NewReader(fmt.Sprintf(`{"userId":"77","instrumentId":"%d","orderType":"BUY","orderKind":"LIMIT","price":"1","quantity":"1"}`, inst)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "trust-body-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("the original client's placement: %d, want 201", resp.StatusCode)
	}
}
