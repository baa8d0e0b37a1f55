package devstack

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/schema"
)

// RunTests runs a test binary's tests (m.Run) with a throwaway PostgreSQL cluster, which
// it hands to use before they start and stops after them, as a TestMain does; it returns
// the exit code. name says whose tests failed to start, in the one line it prints then.
func RunTests(m interface{ Run() int }, name string, use func(*Postgres)) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	pg, stop, err := StartTempPostgres(ctx, "orderflow-"+name+"-test-")
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s tests: start PostgreSQL: %v\n", name, err)
		return 1
	}
	defer func() {
		if err := stop(); err != nil {
			fmt.Fprintf(os.Stderr, "%s tests: %v\n", name, err)
		}
	}()
	use(pg)
	return m.Run()
}

// NewDatabase creates a database of its own on the cluster (its name starts with
// prefix), applies OrderFlow's migrations to it, and returns a pool of at most maxConns
// connections on it (0: pgxpool's default). The caller closes the pool.
func (p *Postgres) NewDatabase(ctx context.Context, prefix string, maxConns int32) (*pgxpool.Pool, error) {
	name := prefix + strings.ToLower(rand.Text()[:16])
	if err := p.CreateDatabase(ctx, name); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(p.URL(name))
	if err != nil {
		return nil, fmt.Errorf("devstack: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("devstack: connect: %w", err)
	}
	if err := schema.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}
