package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"
)

func TestTheAPIRefusesToStartOnASchemaItDoesNotKnow(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A database of its own on the stack's cluster, never migrated.
	if _, err := s.pool.Exec(ctx, `CREATE DATABASE unmigrated`); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for k, v := range s.env {
		env[k] = v
	}
	env["DATABASE_URL"] = strings.Replace(s.dbURL, "/orderflow?", "/unmigrated?", 1)
	err := run(ctx, []string{"api"}, func(k string) string { return env[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "orderflow migrate") {
		t.Errorf("api on an unmigrated database: %v; want a refusal that says to run orderflow migrate", err)
	}
}
