package hub

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

func TestDeriveStatus(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	base := view{
		name: "berlin", parent: "root", parentPath: "root", parentDepth: 0,
		readyGrace: 40 * time.Second, startupGrace: 20 * time.Second, hubStarted: t0,
	}
	own := &linkpb.ClusterState{Name: "berlin", Summary: &linkpb.ClusterSummary{
		KubernetesVersion: "v1.37.1", Distro: "k8s", NodesTotal: 3, NodesReady: 2, ApiReachable: true,
		Allocatable: map[string]string{"pods": "330"},
	}}
	connected := base
	connected.known, connected.connected, connected.own = true, true, own
	connected.connectedAt, connected.lastSeen, connected.lastReport = t0.Add(time.Minute), t0.Add(2*time.Minute), t0.Add(90*time.Second)
	connected.now = t0.Add(2 * time.Minute)

	cond := func(st edgev1alpha1.EdgeClusterStatus, typ string) (metav1.ConditionStatus, string) {
		c := meta.FindStatusCondition(st.Conditions, typ)
		if c == nil {
			return "", ""
		}
		return c.Status, c.Reason
	}

	st, requeue := deriveStatus(connected)
	if st.State != edgev1alpha1.StateConnected || st.Path != "root/berlin" || st.Depth != 1 || st.Parent != "root" ||
		st.Nodes.Ready != 2 || st.Distro != "k8s" || requeue != 0 {
		t.Fatalf("connected: %+v requeue %s", st, requeue)
	}
	if s, r := cond(st, edgev1alpha1.EdgeClusterReady); s != metav1.ConditionTrue || r != ReasonNodesReady {
		t.Errorf("connected Ready = %s/%s", s, r)
	}
	if q := st.Allocatable["pods"]; q.Value() != 330 {
		t.Errorf("allocatable pods %v", st.Allocatable)
	}

	// The same view again gives the same status: nothing to write.
	again := connected
	again.previousStatus = st
	again.now = connected.now.Add(time.Hour) // time alone changes nothing
	if st2, _ := deriveStatus(again); !equality.Semantic.DeepEqual(st, st2) {
		t.Errorf("an idle connected cluster's status changed with time:\n%+v\n%+v", st, st2)
	}

	// The link drops: Connected False at once, Ready kept until the grace ends.
	dropped := connected
	dropped.previousStatus = st
	dropped.connected = false
	dropped.disconnectedAt = t0.Add(3 * time.Minute)
	dropped.now = dropped.disconnectedAt.Add(10 * time.Second)
	st3, requeue := deriveStatus(dropped)
	if s, r := cond(st3, edgev1alpha1.EdgeClusterConnected); s != metav1.ConditionFalse || r != ReasonLinkDown || st3.State != edgev1alpha1.StateOffline {
		t.Errorf("dropped: Connected %s/%s state %s", s, r, st3.State)
	}
	if s, _ := cond(st3, edgev1alpha1.EdgeClusterReady); s != metav1.ConditionTrue {
		t.Errorf("Ready changed inside the grace period: %s", s)
	}
	if requeue != 30*time.Second {
		t.Errorf("requeue %s, want the 30s left of the grace period", requeue)
	}
	if !st3.LastHeartbeatTime.Time.Equal(connected.lastSeen) {
		t.Errorf("last seen %s, want the last frame %s", st3.LastHeartbeatTime, connected.lastSeen)
	}

	// After the grace period: Ready Unknown.
	late := dropped
	late.previousStatus = st3
	late.now = dropped.disconnectedAt.Add(41 * time.Second)
	st4, requeue := deriveStatus(late)
	if s, r := cond(st4, edgev1alpha1.EdgeClusterReady); s != metav1.ConditionUnknown || r != ReasonNotConnected || requeue != 0 {
		t.Errorf("after the grace: Ready %s/%s requeue %s", s, r, requeue)
	}

	// A new hub that has not heard from a once-connected cluster waits for the
	// startup grace, then shows it offline since the hub started.
	restarted := base
	restarted.previousStatus = st
	restarted.now = t0.Add(5 * time.Second)
	st5, requeue := deriveStatus(restarted)
	if !equality.Semantic.DeepEqual(st5, st) || requeue != 15*time.Second {
		t.Errorf("within the startup grace the status changed or requeue is %s", requeue)
	}
	restarted.now = t0.Add(25 * time.Second)
	st6, _ := deriveStatus(restarted)
	if st6.State != edgev1alpha1.StateOffline {
		t.Errorf("after the startup grace: state %s", st6.State)
	}

	// Joined, never connected.
	never := base
	never.now = t0.Add(time.Minute)
	st7, _ := deriveStatus(never)
	if s, r := cond(st7, edgev1alpha1.EdgeClusterConnected); st7.State != edgev1alpha1.StatePending || s != metav1.ConditionFalse || r != ReasonNeverConnected {
		t.Errorf("never connected: %s %s/%s", st7.State, s, r)
	}

	// API server unreachable and no ready nodes are not Ready.
	for _, tc := range []struct {
		summary *linkpb.ClusterSummary
		reason  string
	}{
		{&linkpb.ClusterSummary{ApiReachable: false, Message: "dial tcp: refused"}, ReasonAPIUnreachable},
		{&linkpb.ClusterSummary{ApiReachable: true, NodesTotal: 2}, ReasonNoReadyNodes},
		{nil, ReasonNoReportYet},
	} {
		v := connected
		v.own = &linkpb.ClusterState{Name: "berlin", Summary: tc.summary}
		st, _ := deriveStatus(v)
		if s, r := cond(st, edgev1alpha1.EdgeClusterReady); s == metav1.ConditionTrue || r != tc.reason {
			t.Errorf("summary %v: Ready %s/%s, want not True/%s", tc.summary, s, r, tc.reason)
		}
	}
}
