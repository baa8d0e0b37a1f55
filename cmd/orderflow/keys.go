package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/orderflow/orderflow/auth"
)

const keysUsage = "usage: orderflow keys create --user ID --scopes read,trade[,admin] [--name NAME] | list [--user ID] | revoke KEY_ID"

// runKeys is `orderflow keys`: API keys, straight in PostgreSQL, so the first operator key
// can be made before any exists. create prints the key alone on standard output, so a
// script can capture it; it cannot be shown again.
func runKeys(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(keysUsage)
	}
	fs := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	user := fs.Int64("user", 0, "the user the key acts for")
	scopes := fs.String("scopes", "", "comma-separated scopes: read, trade, admin")
	name := fs.String("name", "", "what the key is for")
	rest := args[1:]
	var keyID string
	if args[0] == "revoke" {
		if len(rest) != 1 {
			return errors.New("revoke needs exactly one key id; " + keysUsage)
		}
		keyID, rest = rest[0], nil
		// A whole key given by mistake is taken for its id, and never echoed.
		if id, _, err := auth.ParseKey(keyID); err == nil {
			keyID = id
		} else if strings.HasPrefix(keyID, auth.KeyPrefix) {
			return errors.New("revoke takes a key's id (the 16 characters after ofk_), and this is no key of OrderFlow's")
		}
	}
	if err := fs.Parse(rest); err != nil {
		return fmt.Errorf("%v; %s", err, keysUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; %s", fs.Arg(0), keysUsage)
	}
	var sc []auth.Scope
	switch args[0] {
	case "create":
		if *user <= 0 {
			return errors.New("create needs --user, a positive integer user id")
		}
		var err error
		if sc, err = auth.ParseScopes(*scopes); err != nil {
			return fmt.Errorf("--scopes: %w", err)
		}
	case "list":
		if *user < 0 {
			return errors.New("--user must be a positive integer user id")
		}
	case "revoke":
	default:
		return fmt.Errorf("unknown keys command %q; %s", args[0], keysUsage)
	}

	pool, err := openPool(ctx, cfg, "orderflow-keys")
	if err != nil {
		return err
	}
	defer pool.Close()
	keys := auth.NewKeys(pool)
	switch args[0] {
	case "create":
		key, _, err := keys.Create(ctx, *user, *name, sc)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, key)
		return err
	case "revoke":
		k, err := keys.Revoke(ctx, keyID)
		if errors.Is(err, auth.ErrKeyNotFound) {
			return fmt.Errorf("no API key has id %q", keyID)
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "key %s of user %d is revoked: it is refused from the next request on\n", k.ID, k.UserID)
		return err
	}
	list, err := keys.List(ctx, *user)
	if err != nil {
		return err
	}
	return printKeys(stdout, list)
}

// printKeys prints keys as a table.
func printKeys(stdout io.Writer, list []auth.Key) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(stdout, "no keys")
		return err
	}
	when := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tSCOPES\tNAME\tCREATED\tLAST USED\tREVOKED")
	for _, k := range list {
		names := make([]string, len(k.Scopes))
		for i, s := range k.Scopes {
			names[i] = string(s)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%q\t%s\t%s\t%s\n", k.ID, k.UserID, strings.Join(names, ","), k.Name,
			k.CreatedAt.UTC().Format(time.RFC3339), when(k.LastUsedAt), when(k.RevokedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := stdout.Write(b.Bytes())
	return err
}
