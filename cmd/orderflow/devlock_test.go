package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
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
