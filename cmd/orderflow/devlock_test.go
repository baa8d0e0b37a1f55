package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orderflow/orderflow/devstack"
)

func TestDevHelpStartsNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	env := map[string]string{"DATA_DIR": data, "TEMPORAL_CLI": "/nonexistent/temporal"}
	for _, args := range [][]string{{"dev", "--help"}, {"dev", "-h"}, {"api", "--help"}, {"worker", "help"}} {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, args, func(k string) string { return env[k] }, &out)
		cancel()
		if err != nil || !strings.Contains(out.String(), "usage: orderflow "+args[0]) {
			t.Errorf("orderflow %s: %v, output %q; want its usage", strings.Join(args, " "), err, out.String())
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("asking for help created the data folder (%v)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := run(ctx, []string{"dev", "--bogus"}, func(k string) string { return env[k] }, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--bogus") {
		t.Errorf("orderflow dev --bogus: %v; want an error naming the argument", err)
	}
}

func TestASecondDevOnTheSameDataFolderRefusesAndLeavesTheFirstAlone(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	dir := t.TempDir()
	// The first stack's PostgreSQL, in the data folder a `orderflow dev` would use.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	unlock, err := devstack.LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresOptions{Dir: filepath.Join(dir, "pg")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Stop() }()

	env := map[string]string{}
	for k, v := range s.env {
		env[k] = v
	}
	env["DATA_DIR"] = dir
	delete(env, "DATABASE_URL")
	err = run(ctx, []string{"dev"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "already") {
		t.Fatalf("a second orderflow dev on the same data folder: %v; want a refusal", err)
	}
	if err := pg.CreateDatabase(ctx, "still_up"); err != nil {
		t.Errorf("the first stack's PostgreSQL is gone after the refused start: %v", err)
	}
}

func TestDevStopsAndSaysSoWhenItsPostgreSQLDies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"DATA_DIR": dir, "TEMPORAL_CLI": os.Getenv("TEMPORAL_CLI"), "LOG_LEVEL": "error"}
	for _, name := range []string{"DEV_PG_PORT", "DEV_TEMPORAL_PORT", "DEV_TEMPORAL_UI_PORT", "DEV_KAFKA_PORT", "HTTP_ADDR", "METRICS_ADDR"} {
		port, err := devstack.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		env[name] = strconv.Itoa(port)
		if strings.HasSuffix(name, "_ADDR") {
			env[name] = "127.0.0.1:" + env[name]
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"dev"}, func(k string) string { return env[k] }, io.Discard) }()

	waitReady(t, "http://"+env["HTTP_ADDR"], done, 90*time.Second)
	pidFile, err := os.ReadFile(filepath.Join(dir, "pg", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
			t.Errorf("orderflow dev ended with %v; want it to say its PostgreSQL stopped", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("orderflow dev still running 30s after its PostgreSQL died")
	}
}
