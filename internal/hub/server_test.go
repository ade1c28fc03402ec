package hub

import (
	"log/slog"
	"testing"

	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

func testHub() *Hub {
	return &Hub{log: slog.New(slog.DiscardHandler), changed: make(chan struct{}, 1), dirty: map[string]struct{}{},
		missionsChanged: make(chan struct{}, 1), children: map[string]*child{}}
}

// The heartbeat's digest covers mission status: a parent whose copy of a
// mission's state differs from the child's asks for a full report, and one
// whose copy agrees stays quiet.
func TestHeartbeatDigestCoversMissionStatus(t *testing.T) {
	h := testHub()
	h.children["eu1"] = &child{states: map[string]*linkpb.ClusterState{}}
	ready := &linkpb.ClusterState{Name: "eu1", Summary: &linkpb.ClusterSummary{NodesTotal: 1},
		Missions: []*linkpb.MissionState{{Namespace: "shop", Name: "web", Generation: 2, Phase: "Ready"}}}
	report := &linkpb.ChildFrame{Body: &linkpb.ChildFrame_Report{Report: &linkpb.Report{Seq: 1, Full: true, Clusters: []*linkpb.ClusterState{ready}}}}
	if reply, err := h.handle("eu1", report); err != nil || reply.GetAck().GetSeq() != 1 {
		t.Fatalf("report: %v, %v", reply, err)
	}

	heartbeat := func(states ...*linkpb.ClusterState) *linkpb.ParentFrame {
		t.Helper()
		f := &linkpb.ChildFrame{Body: &linkpb.ChildFrame_Heartbeat{Heartbeat: &linkpb.Heartbeat{
			ReportSeq: 1, Digest: link.Digest(states), Own: states[0].GetSummary()}}}
		reply, err := h.handle("eu1", f)
		if err != nil {
			t.Fatal(err)
		}
		return reply
	}
	if reply := heartbeat(ready); reply != nil {
		t.Errorf("a heartbeat agreeing with the parent's copy got %v; want no answer", reply)
	}
	failed := &linkpb.ClusterState{Name: "eu1", Summary: ready.GetSummary(),
		Missions: []*linkpb.MissionState{{Namespace: "shop", Name: "web", Generation: 2, Phase: "Failed", Message: "x"}}}
	if reply := heartbeat(failed); reply.GetResync() == nil {
		t.Errorf("a heartbeat whose mission status differs got %v; want a Resync", reply)
	}
}
