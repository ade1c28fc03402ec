// Command simagents joins a range of simulated child clusters to a real
// fornaxd hub and keeps them connected (package simagent) until it is
// signalled, so that benchmarks can put tens of thousands of clusters on one
// hub from a few separate processes. It prints "joined N in D" and then
// "control http://ADDR" on standard output; the control API (simagent.Fleet's
// Handler) takes clusters down, brings them back and reports counters.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fornax-edge/fornax/internal/join"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/simagent"
)

func main() {
	var req join.Request
	flag.StringVar(&req.Parent, "parent", "", "host:port of the hub")
	var tokens []string
	flag.Func("token", "a join token; repeat for concurrent joins, one worker per token (together they need --count uses)", func(v string) error {
		tokens = append(tokens, v)
		return nil
	})
	flag.StringVar(&req.CAHash, "ca-hash", "", "the hub CA's sha256:... hash")
	prefix := flag.String("prefix", "sim-", "cluster names are PREFIX and a five-digit index")
	from := flag.Int("from", 0, "first index")
	count := flag.Int("count", 1000, "clusters to simulate")
	control := flag.String("control", "127.0.0.1:0", "address of the control API")
	var o simagent.Options
	flag.DurationVar(&o.HeartbeatInterval, "heartbeat", link.HeartbeatInterval, "heartbeat interval")
	flag.DurationVar(&o.KeepaliveTime, "keepalive-time", link.KeepaliveTime, "gRPC keepalive ping interval")
	flag.DurationVar(&o.KeepaliveTimeout, "keepalive-timeout", link.KeepaliveTimeout, "gRPC keepalive timeout")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, req, tokens, *prefix, *from, *count, *control, o); err != nil {
		fmt.Fprintln(os.Stderr, "simagents:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, req join.Request, tokens []string, prefix string, from, count int, control string, o simagent.Options) error {
	began := time.Now()
	fleet, _, err := simagent.JoinFleet(ctx, req, tokens, prefix, from, count, o)
	if err != nil {
		return err
	}
	fmt.Printf("joined %d in %s\n", count, time.Since(began).Round(time.Millisecond))
	l, err := net.Listen("tcp", control)
	if err != nil {
		return fmt.Errorf("control API: %w", err)
	}
	srv := &http.Server{Handler: fleet.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	defer func() { _ = srv.Close() }()
	fmt.Printf("control http://%s\n", l.Addr())
	fleet.Run(ctx)
	return nil
}
