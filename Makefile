# OrderFlow. `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin

# Tools are built from Go modules into bin/ (git-ignored); nothing is downloaded at run time.
TEMPORAL_VERSION    := v1.5.1
SQLC_VERSION        := v1.30.0
STATICCHECK_VERSION := v0.8.2
# The production engine for `make cluster`: the newest releases that build with this Go.
TEMPORAL_SERVER_VERSION := v1.32.0
TEMPORAL_UI_VERSION     := v2.55.0

export TEMPORAL_CLI ?= $(BIN)/temporal

.DEFAULT_GOAL := help
.PHONY: help run cluster test test-short chaos bench generate verify lint migrate tools tools-cluster postgres

help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: tools-run postgres ## Start everything (PostgreSQL, Temporal + UI, Kafka, API, worker) on embedded defaults.
	$(GO) build -o $(BIN)/orderflow ./cmd/orderflow
	# On one box an order reaches the book ~20 ms after its 201, so 400ms of backlog keeps
	# 201 → book under a second; the bound counts orders in transit too, which is why
	# elsewhere (real Kafka, a remote Temporal) it stays at its default, 1s.
	ADMISSION_MAX_DELAY=$${ADMISSION_MAX_DELAY:-400ms} $(BIN)/orderflow dev

cluster: tools-cluster postgres ## Start the production topology here: Temporal server on PostgreSQL + UI, broker, 2 APIs, 2 workers.
	$(GO) build -o $(BIN)/orderflow ./cmd/orderflow
	# Every process of it is on this box too (see run).
	ADMISSION_MAX_DELAY=$${ADMISSION_MAX_DELAY:-400ms} $(BIN)/orderflow cluster

test: tools-run tools-cluster postgres ## Run every test (unit, workflow, integration, end to end) with -race.
	@# -p 1: the end-to-end and chaos packages each run a whole system; on a 2-core
	@# machine running them side by side only makes both slower and flakier.
	$(GO) test -race -count=1 -p 1 -timeout 40m ./...

test-short: ## Run the tests that need no services.
	$(GO) test -race -count=1 -short ./order/... ./workflows/... ./kafka/...

chaos: tools-run tools-cluster postgres ## Run the long fault-injection suites, dev server and cluster (real processes; about 25 minutes) and print their tables.
	$(GO) test -race -count=1 -timeout 50m -v -run Chaos ./chaos/ -args -chaos.long

bench: ## Measure a running `make run` against its ceilings; flags in BENCH_ARGS='--mode open --rate 400 --json'.
	$(GO) run ./cmd/orderflow bench $(BENCH_ARGS)

generate: $(BIN)/sqlc ## Regenerate the sqlc query package from queries/*.sql and schema/.
	$(BIN)/sqlc generate

verify: $(BIN)/sqlc $(BIN)/staticcheck ## Check generated code is fresh, gofmt, go vet, staticcheck.
	$(BIN)/sqlc diff
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...

lint: verify ## Alias of verify.

migrate: ## Apply migrations to DATABASE_URL.
	$(GO) run ./cmd/orderflow migrate

tools: tools-run tools-cluster $(BIN)/sqlc $(BIN)/staticcheck ## Build the Temporal CLI and server, sqlc and staticcheck into bin/.

.PHONY: tools-run
tools-run: $(BIN)/temporal

$(BIN)/temporal:
	GOBIN=$(BIN) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_VERSION)

tools-cluster: $(BIN)/temporal-server $(BIN)/temporal-sql-tool $(BIN)/temporal-schema $(BIN)/temporal-ui-server ## The Temporal server, its SQL tool and schema, and the UI server (about 10 minutes the first time).

# go install names a binary after its package (server, sql): each goes through a folder
# of its own and is renamed.
$(BIN)/temporal-server:
	GOBIN=$(BIN)/.build-temporal-server $(GO) install go.temporal.io/server/cmd/server@$(TEMPORAL_SERVER_VERSION)
	mv $(BIN)/.build-temporal-server/server $@ && rmdir $(BIN)/.build-temporal-server

$(BIN)/temporal-sql-tool:
	GOBIN=$(BIN)/.build-temporal-sql-tool $(GO) install go.temporal.io/server/cmd/tools/sql@$(TEMPORAL_SERVER_VERSION)
	mv $(BIN)/.build-temporal-sql-tool/sql $@ && rmdir $(BIN)/.build-temporal-sql-tool

# The server's PostgreSQL schema, shipped in its module; without its Go files, which
# would make it a package of this module's ./...
$(BIN)/temporal-schema: $(BIN)/temporal-server
	rm -rf $@ && cp -r "$$($(GO) env GOMODCACHE)/go.temporal.io/server@$(TEMPORAL_SERVER_VERSION)/schema/postgresql/v12" $@ && chmod -R u+w $@
	find $@ -name '*.go' -delete

$(BIN)/temporal-ui-server:
	GOBIN=$(BIN)/.build-temporal-ui $(GO) install github.com/temporalio/ui-server/v2/cmd/server@$(TEMPORAL_UI_VERSION)
	mv $(BIN)/.build-temporal-ui/server $@ && rmdir $(BIN)/.build-temporal-ui

$(BIN)/sqlc:
	GOBIN=$(BIN) $(GO) install github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION)

$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# PostgreSQL's server binaries come from the system's package manager: installed here if
# missing (as root, with apt-get), otherwise one sentence says how.
postgres:
	@if [ -n "$$DATABASE_URL" ] || command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing PostgreSQL with apt-get..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else \
		echo "PostgreSQL is not installed: run 'sudo apt-get install postgresql' (or set DATABASE_URL) and try again."; exit 1; \
	fi
