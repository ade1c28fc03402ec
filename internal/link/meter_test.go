package link

import (
	"io"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

func TestFrameType(t *testing.T) {
	for _, c := range []struct {
		m    any
		want string
	}{
		{&linkpb.ChildFrame{Body: &linkpb.ChildFrame_Heartbeat{Heartbeat: &linkpb.Heartbeat{}}}, "heartbeat"},
		{&linkpb.ParentFrame{Body: &linkpb.ParentFrame_Objects{Objects: &linkpb.ObjectBatch{}}}, "objects"},
		{&linkpb.ChildFrame{}, "empty"},
		{&linkpb.JoinRequest{}, "JoinRequest"},
		{nil, "unknown"},
		{"not a message", "unknown"},
	} {
		if got := FrameType(c.m); got != c.want {
			t.Errorf("FrameType(%T) = %q, want %q", c.m, got, c.want)
		}
	}
}

func TestMeteredConnCountsBothDirections(t *testing.T) {
	a, b := net.Pipe()
	defer func() { _ = b.Close() }()
	role := Role("test")
	m := MeteredConn(a, role)
	defer func() { _ = m.Close() }()
	go func() {
		buf := make([]byte, 7)
		_, _ = io.ReadFull(b, buf)
		_, _ = b.Write([]byte("abc"))
	}()
	if _, err := m.Write([]byte("1234567")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(m, buf); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(wireBytes.WithLabelValues("test", "sent")); got != 7 {
		t.Errorf("sent = %v, want 7", got)
	}
	if got := testutil.ToFloat64(wireBytes.WithLabelValues("test", "received")); got != 3 {
		t.Errorf("received = %v, want 3", got)
	}
}
