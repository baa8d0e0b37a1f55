package devstack

import (
	"crypto/tls"
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// KafkaOptions configures the in-process Kafka-protocol broker.
type KafkaOptions struct {
	Port       int      // 0: any free port
	Dir        string   // keeps topics across restarts; empty means in memory
	Topics     []string // created at start
	Partitions int32
	TLS        *tls.Config // nil: plaintext
	// SCRAMUser and SCRAMPassword, when set, require SASL SCRAM-SHA-256 as this user.
	SCRAMUser, SCRAMPassword string
}

// Kafka is an in-process Kafka-protocol broker (franz-go's kfake) on real TCP, so real
// clients such as kcat can use it.
type Kafka struct {
	cluster *kfake.Cluster
}

// StartKafka starts the broker on 127.0.0.1.
func StartKafka(opts KafkaOptions) (*Kafka, error) {
	partitions := opts.Partitions
	if partitions == 0 {
		partitions = 4
	}
	kopts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(opts.Port),
		kfake.DefaultNumPartitions(int(partitions)),
		kfake.AllowAutoTopicCreation(),
		kfake.SeedTopics(partitions, opts.Topics...),
	}
	if opts.Dir != "" {
		kopts = append(kopts, kfake.DataDir(opts.Dir))
	}
	if opts.TLS != nil {
		kopts = append(kopts, kfake.TLS(opts.TLS))
	}
	if opts.SCRAMUser != "" {
		kopts = append(kopts, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", opts.SCRAMUser, opts.SCRAMPassword))
	}
	c, err := kfake.NewCluster(kopts...)
	if err != nil {
		return nil, fmt.Errorf("devstack: kafka: %w", err)
	}
	return &Kafka{cluster: c}, nil
}

// Addrs returns the broker's host:port list.
func (k *Kafka) Addrs() []string { return k.cluster.ListenAddrs() }

// Close stops the broker.
func (k *Kafka) Close() { k.cluster.Close() }
