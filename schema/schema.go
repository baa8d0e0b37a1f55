// Package schema holds OrderFlow's numbered SQL migrations and applies them. sqlc reads
// the same files, so the generated queries always match the migrated database.
package schema

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed *.sql
var migrations embed.FS

// Errors of Check.
var (
	ErrBehind = errors.New("the database's schema is older than this binary")
	ErrAhead  = errors.New("the database's schema is newer than this binary")
)

// Migrate applies every migration that the database behind pool has not yet applied.
// Concurrent callers (processes starting together) are safe: each takes a PostgreSQL
// session advisory lock first (goose's session locker, lock.NewPostgresSessionLocker),
// polled every second for up to ten minutes, so one migrates and the others then find
// nothing left to do.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := provider(db, true)
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("schema: migrate: %w", err)
	}
	return nil
}

// Check returns an error, in one sentence, unless the database's schema is at the
// version of this binary's newest migration: ErrBehind (run `orderflow migrate`) or
// ErrAhead (a newer binary migrated it).
func Check(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := provider(db, false)
	if err != nil {
		return err
	}
	have, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("schema: read the database's schema version: %w", err)
	}
	sources := p.ListSources()
	want := sources[len(sources)-1].Version
	switch {
	case have < want:
		return fmt.Errorf("%w: it is at version %d and this binary needs %d; run `orderflow migrate`", ErrBehind, have, want)
	case have > want:
		return fmt.Errorf("%w: it is at version %d and this binary knows up to %d; run the binary that migrated it, or a newer one", ErrAhead, have, want)
	}
	return nil
}

func provider(db *sql.DB, locked bool) (*goose.Provider, error) {
	var opts []goose.ProviderOption
	if locked {
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 600))
		if err != nil {
			return nil, fmt.Errorf("schema: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations, opts...)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return p, nil
}
