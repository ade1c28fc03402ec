package link

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

func TestNegotiate(t *testing.T) {
	if v, err := Negotiate(ProtocolVersion + 5); err != nil || v != ProtocolVersion {
		t.Errorf("newer peer: got %d, %v; want %d", v, err, ProtocolVersion)
	}
	if _, err := Negotiate(0); err == nil || !strings.Contains(err.Error(), "upgrade the peer") {
		t.Errorf("peer below the minimum: %v", err)
	}
}

func TestValidateReport(t *testing.T) {
	summary := &linkpb.ClusterSummary{NodesTotal: 2, NodesReady: 1}
	for _, tc := range []struct {
		name string
		r    *linkpb.Report
		want string // substring of the error; empty: valid
	}{
		{"own state", &linkpb.Report{Seq: 1, Clusters: []*linkpb.ClusterState{{Name: "edge", Summary: summary}}}, ""},
		{"descendant with parent", &linkpb.Report{Seq: 2, Clusters: []*linkpb.ClusterState{{Name: "leaf", Parent: "edge"}}}, ""},
		{"seq zero", &linkpb.Report{}, "seq must start at 1"},
		{"bad name", &linkpb.Report{Seq: 1, Clusters: []*linkpb.ClusterState{{Name: "Edge_1"}}}, "DNS-1123"},
		{"own state with a parent", &linkpb.Report{Seq: 1, Clusters: []*linkpb.ClusterState{{Name: "edge", Parent: "x"}}}, "reports a parent for itself"},
		{"descendant without parent", &linkpb.Report{Seq: 1, Clusters: []*linkpb.ClusterState{{Name: "other"}}}, "without its parent"},
		{"more ready than total", &linkpb.Report{Seq: 1, Clusters: []*linkpb.ClusterState{{Name: "edge",
			Summary: &linkpb.ClusterSummary{NodesTotal: 1, NodesReady: 3}}}}, "3 of 1 nodes"},
		{"removes itself", &linkpb.Report{Seq: 1, Removed: []string{"edge"}}, "cannot report itself removed"},
		{"gateway", &linkpb.Report{Seq: 1, Clusters: []*linkpb.ClusterState{{Name: "edge",
			Gateway: &linkpb.GatewayState{Endpoint: "192.0.2.7", Vpcs: []string{"blue"}, Subnets: []string{"blue-a"}, Generation: 2, Ready: true}}}}, ""},
		{"gateway endpoint not IPv4", &linkpb.Report{Seq: 1, Clusters: []*linkpb.ClusterState{{Name: "edge",
			Gateway: &linkpb.GatewayState{Endpoint: "gw.example.com"}}}}, "not an IPv4 address"},
		{"gateway empty subnet name", &linkpb.Report{Seq: 1, Clusters: []*linkpb.ClusterState{{Name: "edge",
			Gateway: &linkpb.GatewayState{Endpoint: "192.0.2.7", Subnets: []string{""}}}}}, "name of invalid length"},
		{"full with removed", &linkpb.Report{Seq: 1, Full: true, Removed: []string{"x"}}, "full report cannot list removed"},
		{"oversized message", &linkpb.Report{Seq: 1, Clusters: []*linkpb.ClusterState{{Name: "edge",
			Summary: &linkpb.ClusterSummary{Message: strings.Repeat("x", MaxMessageBytes+1)}}}}, "oversized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateReport(tc.r, "edge")
			if tc.want == "" && err != nil {
				t.Fatalf("valid report refused: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestDigestIgnoresOrderAndObservationTime(t *testing.T) {
	a := &linkpb.ClusterState{Name: "a", Summary: &linkpb.ClusterSummary{NodesTotal: 1}, ObservedUnixMs: 1}
	b := &linkpb.ClusterState{Name: "b", Summary: &linkpb.ClusterSummary{NodesTotal: 2}, ObservedUnixMs: 2}
	a2 := proto.CloneOf(a)
	a2.ObservedUnixMs = 99
	if !bytes.Equal(Digest([]*linkpb.ClusterState{a, b}), Digest([]*linkpb.ClusterState{b, a2})) {
		t.Error("digest depends on order or observation time")
	}
	changed := proto.CloneOf(b)
	changed.Summary.NodesReady = 1
	if bytes.Equal(Digest([]*linkpb.ClusterState{a, b}), Digest([]*linkpb.ClusterState{a, changed})) {
		t.Error("digest misses a changed fact")
	}
}

func TestBackoff(t *testing.T) {
	b := &Backoff{Min: time.Second, Max: 8 * time.Second}
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	want := []time.Duration{1, 2, 4, 8, 8}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays %v, want %v seconds", got, want)
		}
	}
	b.Reset()
	if d := b.Next(); d != time.Second {
		t.Errorf("after Reset: %s", d)
	}
	j := &Backoff{Min: 10 * time.Second, Max: time.Minute, Jitter: 0.3}
	for range 100 {
		if d := j.Next(); d < 7*time.Second || d > 78*time.Second {
			t.Fatalf("jittered delay %s out of bounds", d)
		}
	}
}

// FuzzChildFrame feeds arbitrary bytes to what the hub does with a frame from
// the network: decode, then validate. Neither may panic, and a frame that
// validates must survive a re-encoding unchanged. The seed corpus runs in
// `make test`; `go test -fuzz FuzzChildFrame ./internal/link` explores.
func FuzzChildFrame(f *testing.F) {
	for _, m := range []*linkpb.ChildFrame{
		{Body: &linkpb.ChildFrame_Hello{Hello: &linkpb.Hello{ProtocolVersion: 1, Cluster: "edge", Epoch: 7}}},
		{Body: &linkpb.ChildFrame_Report{Report: &linkpb.Report{Seq: 1, Full: true, Clusters: []*linkpb.ClusterState{{
			Name: "edge", Labels: map[string]string{"topology.fornax.io/region": "eu"},
			Summary: &linkpb.ClusterSummary{KubernetesVersion: "v1.37.1", Distro: "k8s", NodesTotal: 2, NodesReady: 2,
				Capacity: map[string]string{"cpu": "32"}, ApiReachable: true}}}}}},
		{Body: &linkpb.ChildFrame_Report{Report: &linkpb.Report{Seq: 2, Removed: []string{"leaf"},
			Clusters: []*linkpb.ClusterState{{Name: "leaf-2", Parent: "edge", Connected: true}}}}},
		{Body: &linkpb.ChildFrame_Heartbeat{Heartbeat: &linkpb.Heartbeat{ReportSeq: 3, Digest: bytes.Repeat([]byte{1}, 32),
			Own: &linkpb.ClusterSummary{NodesTotal: 1}}}},
		{Body: &linkpb.ChildFrame_Ack{Ack: &linkpb.Ack{Seq: 4}}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		frame := &linkpb.ChildFrame{}
		if err := proto.Unmarshal(data, frame); err != nil {
			return
		}
		if hello := frame.GetHello(); hello != nil {
			_ = ValidateHello(hello, "edge")
			return
		}
		if err := ValidateChildFrame(frame, "edge"); err != nil {
			return
		}
		if r := frame.GetReport(); r != nil {
			_ = Digest(r.GetClusters())
		}
		again, err := proto.Marshal(frame)
		if err != nil {
			t.Fatalf("a valid frame does not re-encode: %v", err)
		}
		back := &linkpb.ChildFrame{}
		if err := proto.Unmarshal(again, back); err != nil || !proto.Equal(frame, back) {
			t.Fatalf("a valid frame changed in a round trip: %v", err)
		}
	})
}
