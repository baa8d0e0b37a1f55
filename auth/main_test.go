package auth_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/devstack"
)

// cluster is the PostgreSQL cluster the package's tests share, each test on a database
// of its own; TestMain can hand it to the tests only through a package variable.
var cluster *devstack.Postgres

func TestMain(m *testing.M) {
	os.Exit(devstack.RunTests(m, "auth", func(pg *devstack.Postgres) { cluster = pg }))
}

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := cluster.NewDatabase(context.Background(), "auth_", 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
