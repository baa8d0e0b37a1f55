package orderbook_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/devstack"
)

// cluster is the PostgreSQL cluster the package's tests share; each test gets its own
// database on it, so tests run in parallel. TestMain can hand it to the tests only
// through a package variable.
var cluster *devstack.Postgres

func TestMain(m *testing.M) {
	os.Exit(devstack.RunTests(m, "orderbook", func(pg *devstack.Postgres) { cluster = pg }))
}

// newPool returns a pool on a fresh, migrated database of its own.
func newPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := cluster.NewDatabase(context.Background(), "orde_", 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
