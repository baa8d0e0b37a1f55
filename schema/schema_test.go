package schema_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/schema"
)

var cluster *devstack.Postgres

func TestMain(m *testing.M) {
	os.Exit(devstack.RunTests(m, "schema", func(pg *devstack.Postgres) { cluster = pg }))
}

// emptyDatabase returns a pool on a new database with no schema at all.
func emptyDatabase(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	name := "schema_" + strings.ToLower(rand.Text()[:16])
	if err := cluster.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, cluster.URL(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestMigrationsRunOnceWhenSeveralProcessesStartTogether(t *testing.T) {
	pool := emptyDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = schema.Migrate(context.Background(), pool) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
	}
	var applied, distinct int
	if err := pool.QueryRow(context.Background(),
		`SELECT count(*), count(DISTINCT version_id) FROM goose_db_version WHERE version_id > 0`).Scan(&applied, &distinct); err != nil {
		t.Fatal(err)
	}
	if applied != distinct || applied == 0 {
		t.Errorf("%d migrations recorded for %d versions, want each version once", applied, distinct)
	}
	if err := schema.Check(context.Background(), pool); err != nil {
		t.Errorf("Check after the migrations: %v", err)
	}
}

func TestCheckSaysInOneSentenceWhenTheSchemaAndTheBinaryDisagree(t *testing.T) {
	ctx := context.Background()
	behind := emptyDatabase(t)
	err := schema.Check(ctx, behind)
	if !errors.Is(err, schema.ErrBehind) || !strings.Contains(err.Error(), "orderflow migrate") {
		t.Errorf("Check of an unmigrated database: %v; want ErrBehind, telling to run orderflow migrate", err)
	}
	ahead := emptyDatabase(t)
	if err := schema.Migrate(ctx, ahead); err != nil {
		t.Fatal(err)
	}
	if _, err := ahead.Exec(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (9999, true)`); err != nil {
		t.Fatal(err)
	}
	err = schema.Check(ctx, ahead)
	if !errors.Is(err, schema.ErrAhead) || !strings.Contains(err.Error(), "9999") {
		t.Errorf("Check of a database migrated by a newer binary: %v; want ErrAhead naming version 9999", err)
	}
}
