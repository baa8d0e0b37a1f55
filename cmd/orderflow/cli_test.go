package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every command and subcommand answers --help (and -h, help) with its usage on standard
// output, exits 0, and runs nothing: no environment is needed.
func TestEveryCommandsHelpExitsZero(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--help"}, {"help"}, {"dev", "--help"}, {"api", "-h"}, {"worker", "help"}, {"migrate", "--help"},
		{"orders", "--help"}, {"orders", "stuck", "--help"}, {"orders", "retry", "--help"}, {"orders", "fail", "42", "-h"},
		{"orders", "reconcile", "--help"}, {"instruments", "--help"}, {"instruments", "halt", "--help"},
		{"keys", "--help"}, {"keys", "create", "--help"}, {"keys", "list", "-help"}, {"keys", "revoke", "--help"},
		{"dlq", "--help"}, {"dlq", "list", "--help"}, {"dlq", "replay", "--help"},
		{"audit", "--help"}, {"bench", "--help"}, {"broker", "--help"}, {"healthcheck", "--help"},
	} {
		var out bytes.Buffer
		env := func(string) string { return "" }
		if err := run(context.Background(), args, env, &out); err != nil || !strings.Contains(out.String(), "usage: orderflow") {
			t.Errorf("orderflow %s: %v, output %q; want its usage and no error", strings.Join(args, " "), err, out.String())
		}
	}
}

// Beside a running `orderflow dev`, an operator's command needs no environment: it finds
// the stack through its DATA_DIR's stack.env, and the environment still wins.
func TestOperatorCommandsFindTheDevStackWithoutEnvironment(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	dir := t.TempDir()
	remove, err := writeStackEnv(dir, map[string]string{
		"DATABASE_URL": s.dbURL, "TEMPORAL_ADDRESS": s.env["TEMPORAL_ADDRESS"], "KAFKA_BROKERS": s.env["KAFKA_BROKERS"],
	})
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, stackEnvFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("stack.env: %v, %v; want mode 0600", info, err)
	}
	only := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	for _, args := range [][]string{{"orders", "stuck"}, {"instruments", "list"}, {"keys", "list", "--user", "1"}, {"audit", "--grace", "1h"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, only(map[string]string{"DATA_DIR": dir}), &out); err != nil {
			t.Errorf("orderflow %s beside the stack: %v", strings.Join(args, " "), err)
		}
	}
	err = run(context.Background(), []string{"instruments", "list"}, only(map[string]string{"DATA_DIR": dir, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"}), &bytes.Buffer{})
	if err == nil {
		t.Error("the environment's DATABASE_URL did not win over stack.env")
	}
	// Services never take a stack's settings from a file they were not given.
	if err := run(context.Background(), []string{"migrate"}, only(map[string]string{"DATA_DIR": dir}), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "DATABASE_URL is not set") {
		t.Errorf("orderflow migrate with only DATA_DIR: %v, want DATABASE_URL is not set", err)
	}
	remove()
	if err := run(context.Background(), []string{"instruments", "list"}, only(map[string]string{"DATA_DIR": dir}), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "make run") {
		t.Errorf("with no stack running: %v, want one sentence pointing at make run", err)
	}
}
