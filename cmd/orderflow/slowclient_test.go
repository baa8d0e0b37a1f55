package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/devstack"
)

// The limits serveHTTP configures that a test can observe in seconds. Its ReadTimeout
// (15s), WriteTimeout (30s) and IdleTimeout (120s) take too long to wait for here.
const (
	readHeaderTimeout = 5 * time.Second
	maxHeaderBytes    = 64 << 10
	// timeoutSlack is how late a timeout may fire on a busy machine running -race.
	timeoutSlack = 3 * time.Second
)

// startServeHTTP serves h through serveHTTP, exactly as the binary serves the API, on a
// free loopback port, and returns the address once it accepts connections. The server
// shuts down when the test ends.
func startServeHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	serveHTTP(gctx, g, slog.New(slog.DiscardHandler), addr, h, 10*time.Second)
	t.Cleanup(func() {
		cancel()
		if err := g.Wait(); err != nil {
			t.Errorf("serveHTTP: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("serveHTTP does not accept connections on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialServer opens a TCP connection to addr, closed when the test ends.
func dialServer(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closedBy returns a channel that receives once the server has closed conn (a read
// fails), so that a test waits on the close itself rather than on a guessed duration.
func closedBy(conn net.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, conn)
	}()
	return done
}

// trickle writes a request to conn one byte every 100ms, its request line and then
// header lines without end, until the server closes conn. The server must close it
// within ReadHeaderTimeout plus slack, and not much sooner: an earlier close would come
// from something else, such as a malformed request.
func trickle(t *testing.T, conn net.Conn, closed <-chan struct{}) {
	t.Helper()
	const (
		head = "GET / HTTP/1.1\r\nHost: orderflow\r\n"
		// Repeated after head: it never holds the blank line that ends the headers.
		line = "X-Slow: zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\r\n"
	)
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	start := time.Now()
	giveUp := time.After(readHeaderTimeout + timeoutSlack)
	for i := 0; ; i++ {
		select {
		case <-closed:
			if waited := time.Since(start); waited < readHeaderTimeout-time.Second {
				t.Errorf("disconnected after %v, before ReadHeaderTimeout (%v)", waited, readHeaderTimeout)
			}
			return
		case <-giveUp:
			t.Fatalf("a client sending its headers one byte every 100ms still holds the connection after %v", time.Since(start))
		case <-ticker.C:
			var b byte
			if i < len(head) {
				b = head[i]
			} else {
				b = line[(i-len(head))%len(line)]
			}
			// Once the server has closed the connection writes fail; closed says so.
			_, _ = conn.Write([]byte{b})
		}
	}
}

func TestSlowClientsCannotExhaustTheServer(t *testing.T) {
	t.Parallel()
	addr := startServeHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))

	t.Run("a client sending its headers one byte every 100ms is disconnected after ReadHeaderTimeout", func(t *testing.T) {
		t.Parallel()
		conn := dialServer(t, addr)
		trickle(t, conn, closedBy(conn))
	})

	t.Run("a keep-alive connection whose next request trickles in is disconnected after ReadHeaderTimeout", func(t *testing.T) {
		t.Parallel()
		conn := dialServer(t, addr)
		if err := conn.SetDeadline(time.Now().Add(readHeaderTimeout + 2*timeoutSlack)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: orderflow\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("first request: %v", err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Close {
			t.Fatalf("first request: %s, close %v; want 200 on a kept-alive connection", res.Status, res.Close)
		}
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			_, _ = io.Copy(io.Discard, br)
		}()
		trickle(t, conn, closed)
	})

	t.Run("a request is served promptly while 100 slow clients hold connections", func(t *testing.T) {
		t.Parallel()
		for range 100 {
			conn := dialServer(t, addr)
			if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: orderflow\r\nX-Slow: z"); err != nil {
				t.Fatal(err)
			}
		}
		client := &http.Client{Timeout: 2 * time.Second}
		start := time.Now()
		res, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("a normal request alongside slow clients: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("status = %s, want 200", res.Status)
		}
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("a normal request took %v alongside slow clients", elapsed)
		}
	})

	t.Run("headers larger than MaxHeaderBytes are answered 431", func(t *testing.T) {
		t.Parallel()
		conn := dialServer(t, addr)
		if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		// net/http allows 4 KiB over MaxHeaderBytes before it refuses.
		request := "GET / HTTP/1.1\r\nHost: orderflow\r\nX-Big: " + strings.Repeat("b", maxHeaderBytes+8<<10) + "\r\n\r\n"
		// The server answers before it has read everything, so write while reading.
		go func() { _, _ = io.WriteString(conn, request) }()
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("read the answer to oversized headers: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status = %s, want 431", res.Status)
		}
	})

	t.Run("headers just under MaxHeaderBytes are served", func(t *testing.T) {
		t.Parallel()
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Big", strings.Repeat("b", maxHeaderBytes-1<<10))
		res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("status = %s, want 200", res.Status)
		}
	})
}

func TestTheServerCutsOffSlowAndIdleClients(t *testing.T) {
	srv := newHTTPServer("127.0.0.1:0", http.NotFoundHandler())
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{
		{"headers must arrive within 5s", srv.ReadHeaderTimeout, 5 * time.Second},
		{"the whole request within 15s", srv.ReadTimeout, 15 * time.Second},
		{"the answer must be taken within 30s", srv.WriteTimeout, 30 * time.Second},
		{"an idle keep-alive connection lasts 2 minutes", srv.IdleTimeout, 2 * time.Minute},
	} {
		if c.got != c.want {
			t.Errorf("%s: configured %s, want %s", c.name, c.got, c.want)
		}
	}
	if srv.MaxHeaderBytes != 64<<10 {
		t.Errorf("MaxHeaderBytes = %d, want 64 KiB", srv.MaxHeaderBytes)
	}
}
