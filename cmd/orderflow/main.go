// Command orderflow is OrderFlow's single binary:
//
//	orderflow dev       everything in one process, on embedded defaults (make run)
//	orderflow cluster   the production topology on one machine, a process per part (make cluster)
//	orderflow api       the REST API
//	orderflow worker    outbox relay, Kafka consumer and Temporal worker
//	orderflow migrate   apply database migrations and exit
//	orderflow orders stuck|retry ID|fail ID --reason R   operators' tools for parked orders
//	orderflow instruments list|halt ID|resume ID   list instruments; stop or restart one's matching
//	orderflow keys create|list|revoke   API keys (create prints the key alone)
//	orderflow dlq list|replay   inspect and replay the dead-letter topic
//	orderflow audit     check every invariant over the database and Temporal; exit 1 on a violation
//	orderflow bench     measure a running system against its database and engine ceilings
//	orderflow broker    run the Kafka-protocol broker alone (dev and chaos tests)
//	orderflow healthcheck URL   exit 0 if URL answers 2xx (for container health checks)
//
// Configuration comes from the environment; see Config.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if err := tuneRuntime(os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "orderflow:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "orderflow:", err)
		os.Exit(1)
	}
}

const usage = "usage: orderflow dev|cluster|api|worker|migrate|orders|instruments|keys|dlq|audit|bench|broker|healthcheck URL"

// serviceUsage is the help of the commands that take no arguments.
var serviceUsage = map[string]string{
	"dev": "usage: orderflow dev\n\nStarts what the environment does not point at (PostgreSQL, the Temporal dev server and UI,\n" +
		"a Kafka-protocol broker) with their data under DATA_DIR, then the API and the worker in\n" +
		"this process; Ctrl-C stops them all. One per DATA_DIR: a second one refuses to start.",
	"cluster": "usage: orderflow cluster\n\nStarts the production topology on this machine, each part a process with its own log under\n" +
		"CLUSTER_DATA_DIR/logs (default .orderflow-cluster): PostgreSQL, the Temporal server on it (4 history\n" +
		"shards), the Temporal UI, the Kafka-protocol broker, two APIs and two workers; Ctrl-C stops them all.\n" +
		"Needs bin/temporal-server, bin/temporal-sql-tool, bin/temporal-schema and bin/temporal-ui-server (make tools-cluster).",
	"api":     "usage: orderflow api\n\nServes the REST API on HTTP_ADDR; needs DATABASE_URL (see README, Configuration).",
	"worker":  "usage: orderflow worker\n\nRuns the outbox relay, the Kafka consumer and the Temporal worker; needs DATABASE_URL.",
	"migrate": "usage: orderflow migrate\n\nApplies the database migrations to DATABASE_URL and exits.",
}

// commandUsage is the usage of each command that takes arguments.
var commandUsage = map[string]string{
	"orders": ordersUsage, "instruments": instrumentsUsage, "keys": keysUsage, "dlq": dlqUsage,
	"audit": auditUsage, "bench": benchUsage, "healthcheck": healthcheckUsage,
	"broker": "usage: orderflow broker\n\nRuns the Kafka-protocol broker alone on DEV_KAFKA_PORT, its data under DATA_DIR/kafka.",
}

// operatorCommands are the commands an operator runs by hand, which find a local stack
// by themselves (see withStackEnv); services are always configured explicitly.
var operatorCommands = map[string]bool{"orders": true, "instruments": true, "keys": true, "dlq": true, "audit": true, "bench": true}

const healthcheckUsage = "usage: orderflow healthcheck URL"

// asksForHelp reports whether args ask for help: -h, -help, --help or help, anywhere.
func asksForHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help", "help":
			return true
		}
	}
	return false
}

// errUsage is returned for a missing or unknown command.
var errUsage = errors.New(usage)

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		_, err := fmt.Fprintln(stdout, usage)
		return err
	}
	if text, ok := commandUsage[args[0]]; ok && asksForHelp(args[1:]) {
		// Asking for help anywhere in a command's arguments prints its usage, runs
		// nothing, and is no error.
		_, err := fmt.Fprintln(stdout, text)
		return err
	}
	if operatorCommands[args[0]] {
		// Run next to `make run`, an operator's command finds its stack without any
		// environment; what the environment sets wins.
		getenv = withStackEnv(getenv)
	}
	if args[0] == "healthcheck" {
		if len(args) != 2 {
			return errors.New(healthcheckUsage)
		}
		return healthcheck(ctx, args[1])
	}
	if text, ok := serviceUsage[args[0]]; ok && len(args) > 1 {
		// These take no arguments; asking for help must not start anything.
		switch args[1] {
		case "-h", "--help", "help":
			_, err := fmt.Fprintln(stdout, text)
			return err
		}
		return fmt.Errorf("unexpected argument %q; %s (configuration comes from the environment)", args[1], strings.SplitN(text, "\n", 2)[0])
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stdout)
	switch args[0] {
	case "dev":
		return runDev(ctx, cfg, logger, stdout)
	case "cluster":
		return runCluster(ctx, cfg, getenv, logger, stdout)
	case "api":
		return runServices(ctx, cfg, logger, roleAPI)
	case "worker":
		return runServices(ctx, cfg, logger, roleWorker)
	case "migrate":
		return runMigrate(ctx, cfg)
	case "orders":
		return runOrders(ctx, cfg, args[1:], stdout)
	case "instruments":
		return runInstruments(ctx, cfg, args[1:], stdout)
	case "keys":
		return runKeys(ctx, cfg, args[1:], stdout)
	case "dlq":
		return runDLQ(ctx, cfg, args[1:], stdout)
	case "audit":
		return runAudit(ctx, cfg, args[1:], stdout)
	case "bench":
		return runBench(ctx, cfg, args[1:], stdout)
	case "broker":
		return runBroker(ctx, cfg, logger, stdout)
	}
	return fmt.Errorf("unknown command %q; %s", args[0], usage)
}
