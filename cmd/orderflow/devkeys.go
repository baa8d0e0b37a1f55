package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/orderflow/orderflow/auth"
)

// The API keys `orderflow dev` makes on its first start and keeps with its data, so the
// README's examples work with authentication on. Their secrets exist only in that file
// (the database holds their hashes); deleting it makes new ones at the next start.
const (
	devKeysFile       = "api-keys.env"
	devDemoKeyVar     = "ORDERFLOW_DEMO_KEY"
	devOperatorKeyVar = "ORDERFLOW_OPERATOR_KEY"
	devDemoUser       = 1
	devOperatorUser   = 9000
)

// ensureDevKeys returns the demo and operator keys of dataDir's file, making (and
// writing) any that is missing or no longer valid: revoked, or from a database since
// reset.
func ensureDevKeys(ctx context.Context, cfg Config, dataDir string) (map[string]string, error) {
	path := filepath.Join(dataDir, devKeysFile)
	keys, err := readEnvFile(path)
	if err != nil {
		return nil, err
	}
	pool, err := openPool(ctx, cfg, "orderflow-dev-keys")
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	store := auth.NewKeys(pool)
	wants := []struct {
		name   string
		user   int64
		label  string
		scopes []auth.Scope
	}{
		{devDemoKeyVar, devDemoUser, "make run: demo user", []auth.Scope{auth.ScopeRead, auth.ScopeTrade}},
		{devOperatorKeyVar, devOperatorUser, "make run: operator", []auth.Scope{auth.ScopeAdmin, auth.ScopeRead}},
	}
	changed := false
	for _, w := range wants {
		if k := keys[w.name]; k != "" {
			_, err := store.Authenticate(ctx, k)
			if err == nil {
				continue
			}
			if !errors.Is(err, auth.ErrUnknownKey) && !errors.Is(err, auth.ErrRevokedKey) && !errors.Is(err, auth.ErrMalformedKey) {
				return nil, fmt.Errorf("check the dev keys: %w", err)
			}
		}
		k, _, err := store.Create(ctx, w.user, w.label, w.scopes)
		if err != nil {
			return nil, fmt.Errorf("create the dev keys: %w", err)
		}
		keys[w.name], changed = k, true
	}
	if !changed {
		return keys, nil
	}
	var b bytes.Buffer
	b.WriteString("# API keys of `make run` (orderflow dev); secret. Source it: . " + devKeysFile + "\n")
	for _, w := range wants {
		fmt.Fprintf(&b, "%s=%s\n", w.name, keys[w.name])
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("write the dev keys: %w", err)
	}
	return keys, nil
}
