package hub

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"

	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

func testHub() *Hub {
	return &Hub{log: slog.New(slog.DiscardHandler), changed: make(chan struct{}, 1), dirty: map[string]bool{},
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

// A link going up or down is marked as such until the status reconciler
// takes it, whatever else is notified for the same cluster meanwhile.
func TestLinkChangesAreTakenApart(t *testing.T) {
	h := testHub()
	h.notify("a", "b")
	h.notifyLink("b", "c")
	h.notify("c")
	link, other := h.takeDirty()
	slices.Sort(link)
	if !slices.Equal(link, []string{"b", "c"}) || !slices.Equal(other, []string{"a"}) {
		t.Errorf("took link %v, other %v; want link [b c], other [a]", link, other)
	}
	if link, other := h.takeDirty(); len(link)+len(other) > 0 {
		t.Errorf("taken twice: %v, %v", link, other)
	}
}

// The status reconciler's queue serves a link change before the report
// changes queued ahead of it.
func TestLinkChangesJumpTheStatusQueue(t *testing.T) {
	q := priorityqueue.New[reconcile.Request]("test")
	defer q.ShutDown()
	for i := range 100 {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: fmt.Sprintf("summary-%d", i)}})
	}
	ec := &edgev1alpha1.EdgeCluster{}
	ec.Name = "cut"
	enqueueWithPriority(PriorityLink).Generic(t.Context(), event.TypedGenericEvent[*edgev1alpha1.EdgeCluster]{Object: ec}, q)
	req, priority, _ := q.GetWithPriority()
	if req.Name != "cut" || priority != PriorityLink {
		t.Errorf("first out: %s at priority %d; want cut at %d", req.Name, priority, PriorityLink)
	}
}
