package workflows_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/workflows"
)

// rpcCounter counts the Temporal client's calls by method.
type rpcCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *rpcCounter) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.mu.Lock()
	c.calls[method[strings.LastIndex(method, "/")+1:]]++
	c.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (c *rpcCounter) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

// TestACancelNotAppliedInTimeWaitsWithoutPollingTheServerInALoop: a cancel waits up to
// CANCEL_WAIT for the run to end. The server answers a long poll at once when its
// deadline is less than a second away, so a wait whose deadline is the caller's turned
// its last second into a loop of history reads (about 190 per cancel under load, each
// one work for the Temporal server, the bottleneck then). It must be a handful.
func TestACancelNotAppliedInTimeWaitsWithoutPollingTheServerInALoop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmp, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{SearchAttributes: workflows.SearchAttributeTypes()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tmp.Stop() })
	rpcs := &rpcCounter{calls: map[string]int{}}
	c, err := client.DialContext(ctx, client.Options{
		HostPort:          tmp.HostPort,
		ConnectionOptions: client.ConnectionOptions{DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(rpcs.intercept)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := workflows.NewStarter(c, workflows.RetryConfig{})

	// No worker polls the task queue, so the run the cancel starts never ends.
	const wait = 2 * time.Second
	start := time.Now()
	applied, err := s.RequestCancel(ctx, 7, "", "test", wait)
	took := time.Since(start)
	if err != nil || applied {
		t.Fatalf("RequestCancel = %v, %v; want not applied, no error", applied, err)
	}
	if took < wait || took > wait+time.Second {
		t.Errorf("RequestCancel returned after %v; want about %v", took, wait)
	}
	if n := rpcs.count("GetWorkflowExecutionHistory"); n > 3 {
		t.Errorf("the cancel's wait read the run's history %d times; want at most 3", n)
	}
}
