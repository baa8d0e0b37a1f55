package metrics

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/queries"
)

// scrapeTimeout bounds the queries a scrape runs, so a slow database or broker delays a
// scrape by at most this and never piles scrapes up.
const scrapeTimeout = 2 * time.Second

// WatchDatabase adds gauges read from PostgreSQL at every scrape: the outbox backlog
// (messages not yet published) and the number of parked orders (waiting for an
// operator). If a query fails, its gauge is missing from that scrape and the error is
// reported through Handler's log. It returns an error if it was already called.
func (m *Metrics) WatchDatabase(pool *pgxpool.Pool) error {
	c := &databaseCollector{
		q: queries.New(pool),
		backlog: prometheus.NewDesc("orderflow_outbox_backlog",
			"Outbox messages waiting to be published to Kafka, counted at scrape.", nil, nil),
		parked: prometheus.NewDesc("orderflow_parked_orders",
			"Orders parked for an operator (needs_attention), counted at scrape.", nil, nil),
	}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: watch database: %w", err)
	}
	return nil
}

// databaseCollector counts rows at scrape time.
type databaseCollector struct {
	q               *queries.Queries
	backlog, parked *prometheus.Desc
}

func (c *databaseCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backlog
	ch <- c.parked
}

func (c *databaseCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	for _, g := range []struct {
		desc  *prometheus.Desc
		count func(context.Context) (int64, error)
	}{{c.backlog, c.q.CountOutbox}, {c.parked, c.q.CountParkedOrders}} {
		n, err := g.count(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(g.desc, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(n))
	}
}

// WatchConsumerLag adds orderflow_consumer_lag{topic,partition}, the number of records
// group has not committed yet on each partition, asked of the brokers through client at
// every scrape. client can be any client of the cluster (the relay's producer will do).
// Partitions whose lag cannot be computed are left out of that scrape. It returns an
// error if it was already called.
func (m *Metrics) WatchConsumerLag(client *kgo.Client, group string) error {
	c := &lagCollector{
		adm:   kadm.NewClient(client),
		group: group,
		lag: prometheus.NewDesc("orderflow_consumer_lag",
			"Records the consumer group has not committed yet, by topic and partition, asked of Kafka at scrape.",
			[]string{"topic", "partition"}, prometheus.Labels{"group": group}),
	}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: watch consumer lag: %w", err)
	}
	return nil
}

// lagCollector asks Kafka for a group's lag at scrape time.
type lagCollector struct {
	adm   *kadm.Client
	group string
	lag   *prometheus.Desc
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.lag }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	lags, err := c.adm.Lag(ctx, c.group)
	if err == nil {
		err = lags.Error()
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.lag, fmt.Errorf("consumer lag of %s: %w", c.group, err))
		return
	}
	for _, l := range lags[c.group].Lag.Sorted() {
		if l.Err != nil || l.Lag < 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(l.Lag),
			l.Topic, strconv.Itoa(int(l.Partition)))
	}
}

// WatchAdmission reports admission control's view at scrape: the execution backlog (the
// orders accepted and not yet executed) and the rate it drains at.
func (m *Metrics) WatchAdmission(view func() (backlog int64, drainPerSecond float64)) error {
	for _, g := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orderflow_execution_backlog",
			Help: "Orders accepted and not yet executed (open, off the book, not parked), as admission control last counted them."},
			func() float64 { n, _ := view(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orderflow_execution_drain_per_second",
			Help: "The rate the execution backlog drains at (moving average over about 5s), which admission control bounds new orders by."},
			func() float64 { _, r := view(); return r }),
	} {
		if err := m.reg.Register(g); err != nil {
			return fmt.Errorf("metrics: watch admission: %w", err)
		}
	}
	return nil
}

// WatchEventStreams reports the event streams' hub at scrape: the streams open on this
// replica, and how many were dropped for falling behind since it started.
func (m *Metrics) WatchEventStreams(view func() (open int, dropped int64)) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orderflow_event_streams",
			Help: "Event streams (GET /api/v1/orders/events/stream and one order's) open on this replica."},
			func() float64 { n, _ := view(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "orderflow_event_streams_dropped_total",
			Help: "Event streams this replica closed because their client read too slowly (sent event: dropped)."},
			func() float64 { _, d := view(); return float64(d) }),
	} {
		if err := m.reg.Register(c); err != nil {
			return fmt.Errorf("metrics: watch event streams: %w", err)
		}
	}
	return nil
}
