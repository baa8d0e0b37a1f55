// Package chaos is OrderFlow's fault-injection suite; it holds only tests.
//
// The suite runs the real processes — `orderflow api`, one or two `orderflow worker`s,
// PostgreSQL, the Temporal dev server and `orderflow broker` (the Kafka-protocol broker in
// a process of its own) — places a steady mixed load of orders and cancels, and injects
// one fault at a time: a worker killed with SIGKILL in the middle of its activities, two
// workers with one killed, a restart of the broker, of the API, of PostgreSQL and of the
// Temporal server, and every order-execution message delivered twice and out of order;
// then faults of production operations (production_test.go): runs cancelled and
// terminated by operators, the API's database sessions terminated mid-statement, Kafka
// down for minutes, a message for an order that does not exist yet, and a restore of an
// older database snapshot against the kept Temporal namespace.
// TestChaosCluster (cluster_test.go) runs make cluster's topology instead — the Temporal
// server on PostgreSQL, two API replicas sharing the load, two workers — and kills the
// Temporal server, one worker and one API replica (kill -9), and restarts the workers one
// at a time.
// After each scenario the load stops, the system drains, and the suite checks that no
// acknowledged order was lost or executed twice and that `orderflow audit` finds nothing.
//
// `go test ./chaos/` (part of `make test`) runs a short load per scenario;
// `make chaos` runs the long one (`-chaos.long`) and prints the table that
// RELIABILITY.md records.
package chaos
