// Package simagent simulates many child clusters cheaply for benchmarks: each
// simulated cluster joins with a real token, holds its own TLS connection and
// speaks the real link protocol (Hello, a full report, heartbeats), but has no
// Kubernetes cluster behind it. Bytes on each connection are counted at the
// TLS record level.
package simagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/fornax-edge/fornax/internal/join"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// Options configure simulated clusters.
type Options struct {
	HeartbeatInterval time.Duration
	KeepaliveTime     time.Duration
	KeepaliveTimeout  time.Duration
	// Dial overrides how connections are made (a test relay); nil dials directly.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Counters are bytes on the wire (TLS records, both directions).
type Counters struct {
	Sent, Received atomic.Int64
}

// Cluster is one simulated child cluster.
type Cluster struct {
	Creds *join.Credentials
	Bytes Counters
	// Connected is closed once the parent's Welcome arrived.
	Connected chan struct{}
	once      sync.Once
}

// New returns a simulated cluster for the given credentials.
func New(creds *join.Credentials) *Cluster {
	return &Cluster{Creds: creds, Connected: make(chan struct{})}
}

type countingConn struct {
	net.Conn
	c *Counters
}

func (cc countingConn) Read(b []byte) (int, error) {
	n, err := cc.Conn.Read(b)
	cc.c.Received.Add(int64(n))
	return n, err
}

func (cc countingConn) Write(b []byte) (int, error) {
	n, err := cc.Conn.Write(b)
	cc.c.Sent.Add(int64(n))
	return n, err
}

// Run connects and stays connected, heartbeating, until ctx ends or the
// stream fails; it returns the stream's error.
func (s *Cluster) Run(ctx context.Context, o Options) error {
	roots, err := s.Creds.Roots()
	if err != nil {
		return err
	}
	cert, err := s.Creds.Certificate()
	if err != nil {
		return err
	}
	dial := o.Dial
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	cfg := link.ClientTLS(roots, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil })
	conn, err := grpc.NewClient(s.Creds.ParentAddress,
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := dial(ctx, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{Conn: c, c: &s.Bytes}, nil
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: o.KeepaliveTime, Timeout: o.KeepaliveTimeout, PermitWithoutStream: true}),
	)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	stream, err := linkpb.NewLinkClient(conn).Connect(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&linkpb.ChildFrame{Body: &linkpb.ChildFrame_Hello{Hello: &linkpb.Hello{
		ProtocolVersion: link.ProtocolVersion, Cluster: s.Creds.Cluster, Epoch: 1,
		HeartbeatIntervalMs: uint32(o.HeartbeatInterval.Milliseconds()),
	}}}); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetWelcome() == nil {
		return fmt.Errorf("%s: first frame is not a Welcome", s.Creds.Cluster)
	}
	own := Summary()
	state := []*linkpb.ClusterState{{Name: s.Creds.Cluster, Connected: true, Summary: own}}
	if err := stream.Send(&linkpb.ChildFrame{Body: &linkpb.ChildFrame_Report{Report: &linkpb.Report{Seq: 1, Full: true, Clusters: state}}}); err != nil {
		return err
	}
	s.once.Do(func() { close(s.Connected) })
	errc := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				errc <- err
				return
			}
		}
	}()
	digest := link.Digest(state)
	t := time.NewTicker(o.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case <-t.C:
			if err := stream.Send(&linkpb.ChildFrame{Body: &linkpb.ChildFrame_Heartbeat{Heartbeat: &linkpb.Heartbeat{
				ReportSeq: 1, Digest: digest, Own: own,
			}}}); err != nil {
				return err
			}
		}
	}
}

// Summary is the summary every simulated cluster reports: a small upstream
// cluster with three Ready nodes.
func Summary() *linkpb.ClusterSummary {
	return &linkpb.ClusterSummary{
		KubernetesVersion: "v1.37.1", Distro: "k8s", NodesTotal: 3, NodesReady: 3, ApiReachable: true,
		Capacity:    map[string]string{"cpu": "48", "memory": "192Gi", "pods": "330"},
		Allocatable: map[string]string{"cpu": "47", "memory": "190Gi", "pods": "330"},
	}
}
