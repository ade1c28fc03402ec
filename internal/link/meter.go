package link

import (
	"context"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Role names a side of the link in metrics: "child" (the agent's uplink) or
// "parent" (the hub's links to its children, summed).
type Role string

// The two sides of the link.
const (
	RoleChild  Role = "child"
	RoleParent Role = "parent"
)

var (
	wireBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fornax_link_wire_bytes_total",
		Help: "Bytes on the link's TCP connections (TLS records, HTTP/2 frames and keepalive pings included), by role and direction.",
	}, []string{"role", "direction"})
	frames = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fornax_link_frames_total",
		Help: "Link messages, by role, direction and type (hello, report, heartbeat, objects, ...).",
	}, []string{"role", "direction", "type"})
	frameBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fornax_link_frame_bytes_total",
		Help: "Encoded size of link messages on the wire (gRPC message framing included), by role, direction and type.",
	}, []string{"role", "direction", "type"})
)

func init() {
	metrics.Registry.MustRegister(wireBytes, frames, frameBytes)
}

// FrameType names a link message for metrics and logs: the field name of a
// frame's body ("report", "objects", ...), or the message's own name for the
// unary calls ("JoinRequest").
func FrameType(m any) string {
	pm, ok := m.(proto.Message)
	if !ok || pm == nil {
		return "unknown"
	}
	r := pm.ProtoReflect()
	if od := r.Descriptor().Oneofs().ByName("body"); od != nil {
		if fd := r.WhichOneof(od); fd != nil {
			return string(fd.Name())
		}
		return "empty"
	}
	return string(r.Descriptor().Name())
}

// StatsHandler counts every message sent and received on a gRPC connection of
// the link (fornax_link_frames_total, fornax_link_frame_bytes_total).
func StatsHandler(role Role) stats.Handler { return frameMeter{role: string(role)} }

type frameMeter struct{ role string }

func (frameMeter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (frameMeter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (frameMeter) HandleConn(context.Context, stats.ConnStats)                       {}

func (m frameMeter) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch p := s.(type) {
	case *stats.InPayload:
		t := FrameType(p.Payload)
		frames.WithLabelValues(m.role, "received", t).Inc()
		frameBytes.WithLabelValues(m.role, "received", t).Add(float64(p.WireLength))
	case *stats.OutPayload:
		t := FrameType(p.Payload)
		frames.WithLabelValues(m.role, "sent", t).Inc()
		frameBytes.WithLabelValues(m.role, "sent", t).Add(float64(p.WireLength))
	}
}

// MeteredConn counts the bytes read from and written to c in
// fornax_link_wire_bytes_total.
func MeteredConn(c net.Conn, role Role) net.Conn {
	return &meteredConn{Conn: c, in: wireBytes.WithLabelValues(string(role), "received"), out: wireBytes.WithLabelValues(string(role), "sent")}
}

type meteredConn struct {
	net.Conn
	in, out prometheus.Counter
}

func (c *meteredConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(float64(n))
	return n, err
}

func (c *meteredConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(float64(n))
	return n, err
}

// MeteredListener wraps every connection lis accepts in MeteredConn.
func MeteredListener(lis net.Listener, role Role) net.Listener {
	return meteredListener{Listener: lis, role: role}
}

type meteredListener struct {
	net.Listener
	role Role
}

func (l meteredListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return MeteredConn(c, l.role), nil
}

// MeteredDialer dials TCP and wraps the connection in MeteredConn, for
// grpc.WithContextDialer.
func MeteredDialer(role Role) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return MeteredConn(c, role), nil
	}
}
