// Package schema holds OrderFlow's numbered SQL migrations and applies them. sqlc reads
// the same files, so the generated queries always match the migrated database.
package schema

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

//go:embed *.sql
var migrations embed.FS

// Migrate applies every migration that the database behind pool has not yet applied.
// Concurrent callers are safe: goose serialises them with an advisory lock.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	return migrate(ctx, db)
}

func migrate(ctx context.Context, db *sql.DB) error {
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations)
	if err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("schema: migrate: %w", err)
	}
	return nil
}
