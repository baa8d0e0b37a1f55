package activities_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/schema"
)

// cluster is the PostgreSQL cluster the package's tests share; each test gets its own
// database on it, so tests run in parallel. TestMain can hand it to the tests only
// through a package variable.
var cluster *devstack.Postgres

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	pg, stop, err := devstack.StartTempPostgres(ctx, "orderflow-activities-test-")
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "activities tests: start PostgreSQL:", err)
		return 1
	}
	defer func() {
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, "activities tests:", err)
		}
	}()
	cluster = pg
	return m.Run()
}

// newPool returns a pool on a fresh, migrated database of its own.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	name := "acts_" + strings.ToLower(rand.Text()[:16])
	if err := cluster.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	cfg, err := pgxpool.ParseConfig(cluster.URL(name))
	if err != nil {
		t.Fatalf("parse database URL: %v", err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return pool
}
