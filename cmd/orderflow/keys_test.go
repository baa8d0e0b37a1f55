package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/auth"
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
	if out := s.command(t, "keys", "revoke", id); !strings.Contains(out, "revoked") {
		t.Errorf("keys revoke: %q", out)
	}
	if got := status(); got != http.StatusUnauthorized {
		t.Errorf("the revoked key: %d, want 401", got)
	}
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
