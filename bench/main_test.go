package bench_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/schema"
)

// cluster is the PostgreSQL cluster of the package's database tests, started by the
// first test that needs one (most of the package's tests need none), each test on a
// database of its own.
var cluster struct {
	once sync.Once
	pg   *devstack.Postgres
	stop func() error
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster.stop != nil {
		if err := cluster.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "bench tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newDB returns a pool on a fresh, migrated database of its own, and its URL.
func newDB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	cluster.once.Do(func() {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cluster.pg, cluster.stop, cluster.err = devstack.StartTempPostgres(ctx, "orderflow-bench-test-")
	})
	if cluster.err != nil {
		t.Fatalf("start PostgreSQL: %v", cluster.err)
	}
	name := "bench_" + strings.ToLower(rand.Text()[:16])
	if err := cluster.pg.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	url := cluster.pg.URL(name)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return pool, url
}
