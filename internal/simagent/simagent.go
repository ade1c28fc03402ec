// Package simagent simulates many child clusters cheaply for benchmarks: each
// simulated cluster joins with a real token, holds its own TLS connection and
// speaks the real link protocol (Hello with what it holds, reports,
// heartbeats, object batches acknowledged and their missions reported Ready),
// but has no Kubernetes cluster behind it. Bytes on each connection are
// counted at the TLS record level. A Fleet runs many of them in one process,
// as KubeEdge's edgemark or Karmada's fake clusters do, and can take some
// down, bring them back or drop them all at once.
package simagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

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

// Cluster is one simulated child cluster. Its state (epoch, report sequence,
// the objects it holds) outlives a connection, as a real agent's does, so a
// reconnect resynchronises incrementally.
type Cluster struct {
	Creds *join.Credentials
	Bytes Counters
	// Connected is closed once the parent's first Welcome arrived.
	Connected chan struct{}
	once      sync.Once
	// Up is true while a stream is established (after the Welcome).
	Up atomic.Bool

	epoch uint64
	mu    sync.Mutex
	// Guarded by mu: the last report's sequence number, the state it
	// reported, and the objects held from the parent by HaveKey.
	lastSeq  uint64
	reported *linkpb.ClusterState
	held     map[string]*linkpb.ObjectVersion
	origins  map[string]string
}

// New returns a simulated cluster for the given credentials.
func New(creds *join.Credentials) *Cluster {
	return &Cluster{Creds: creds, Connected: make(chan struct{}), epoch: rand.Uint64() | 1, held: map[string]*linkpb.ObjectVersion{}}
}

// Holds reports whether the cluster holds the mission at the generation.
func (s *Cluster) Holds(namespace, name string, generation int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.held[namespace+"/"+name]
	return v != nil && v.GetGeneration() == generation
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
// stream fails; it returns the stream's error (nil when ctx ended).
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
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := linkpb.NewLinkClient(conn).Connect(sctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	hello := &linkpb.Hello{
		ProtocolVersion: link.ProtocolVersion, Cluster: s.Creds.Cluster, Epoch: s.epoch, LastReportSeq: s.lastSeq,
		HeartbeatIntervalMs: uint32(o.HeartbeatInterval.Milliseconds()),
	}
	for _, v := range s.held {
		hello.Have = append(hello.Have, v)
	}
	if len(hello.Have) > link.HaveDirectMax {
		hello.HaveDigests, hello.Have = link.HaveDigests(hello.Have), nil
	}
	s.mu.Unlock()
	if err := stream.Send(&linkpb.ChildFrame{Body: &linkpb.ChildFrame_Hello{Hello: hello}}); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	w := first.GetWelcome()
	if w == nil {
		return fmt.Errorf("%s: first frame is not a Welcome", s.Creds.Cluster)
	}
	s.Up.Store(true)
	defer s.Up.Store(false)
	s.once.Do(func() { close(s.Connected) })

	send := make(chan *linkpb.ChildFrame, 16)
	if w.GetReportSeq() != s.seq() || s.seq() == 0 {
		send <- s.report(true) // the parent does not have our last report
	}
	errc := make(chan error, 2)
	go func() {
		for {
			f, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			for _, out := range s.handle(f) {
				select {
				case send <- out:
				case <-sctx.Done():
					return
				}
			}
		}
	}()
	t := time.NewTicker(o.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case f := <-send:
			if err := stream.Send(f); err != nil {
				return err
			}
		case <-t.C:
			s.mu.Lock()
			hb := &linkpb.Heartbeat{ReportSeq: s.lastSeq, Digest: link.Digest([]*linkpb.ClusterState{s.reported}), Own: Summary()}
			s.mu.Unlock()
			if err := stream.Send(&linkpb.ChildFrame{Body: &linkpb.ChildFrame_Heartbeat{Heartbeat: hb}}); err != nil {
				return err
			}
		}
	}
}

func (s *Cluster) seq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeq
}

// state is what the cluster would report now: its summary and every mission
// it holds, Ready at the generation it holds.
func (s *Cluster) stateLocked() *linkpb.ClusterState {
	st := &linkpb.ClusterState{Name: s.Creds.Cluster, Connected: true, Summary: Summary()}
	for _, v := range s.held {
		if v.GetKind() != "Mission" {
			continue
		}
		st.Missions = append(st.Missions, &linkpb.MissionState{Namespace: v.GetNamespace(), Name: v.GetName(),
			Generation: v.GetGeneration(), Phase: "Ready", Origin: s.origins[link.HaveKey(v)]})
	}
	st, _ = link.ApplyDelta(nil, st) // canonical (sorted) order
	return st
}

// report returns the next report: everything (full), or what changed since
// the last one.
func (s *Cluster) report(full bool) *linkpb.ChildFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.stateLocked()
	body := now
	if !full && s.reported != nil {
		body = link.DeltaState(s.reported, now)
	}
	s.lastSeq++
	s.reported = now
	return &linkpb.ChildFrame{Body: &linkpb.ChildFrame_Report{Report: &linkpb.Report{Seq: s.lastSeq, Full: full, Clusters: []*linkpb.ClusterState{body}}}}
}

// handle answers one frame from the parent.
func (s *Cluster) handle(f *linkpb.ParentFrame) []*linkpb.ChildFrame {
	switch b := f.GetBody().(type) {
	case *linkpb.ParentFrame_Resync:
		return []*linkpb.ChildFrame{s.report(true)}
	case *linkpb.ParentFrame_HaveRequest:
		want := map[uint32]bool{}
		for _, n := range b.HaveRequest.GetBuckets() {
			want[n] = true
		}
		list := &linkpb.HaveList{Buckets: b.HaveRequest.GetBuckets()}
		s.mu.Lock()
		for k, v := range s.held {
			if want[link.Bucket(k)] {
				list.Have = append(list.Have, v)
			}
		}
		s.mu.Unlock()
		return []*linkpb.ChildFrame{{Body: &linkpb.ChildFrame_HaveList{HaveList: list}}}
	case *linkpb.ParentFrame_Objects:
		batch := b.Objects
		s.mu.Lock()
		if batch.GetFull() {
			clear(s.held)
		}
		for _, o := range batch.GetObjects() {
			k := link.HaveKey(o.GetVersion())
			if o.GetDeleted() {
				delete(s.held, k)
				delete(s.origins, k)
				continue
			}
			s.held[k] = proto.CloneOf(o.GetVersion())
			if s.origins == nil {
				s.origins = map[string]string{}
			}
			s.origins[k] = o.GetOrigin()
		}
		s.mu.Unlock()
		return []*linkpb.ChildFrame{
			{Body: &linkpb.ChildFrame_Ack{Ack: &linkpb.Ack{Seq: batch.GetSeq()}}},
			s.report(false),
		}
	default:
		return nil
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
