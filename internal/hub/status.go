package hub

import (
	"fmt"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// Condition reasons, documented in docs/api.md.
const (
	ReasonLinkUp         = "LinkUp"
	ReasonLinkDown       = "LinkDown"
	ReasonNeverConnected = "NeverConnected"
	ReasonNoReportYet    = "NoReportYet"
	ReasonNodesReady     = "NodesReady"
	ReasonNoReadyNodes   = "NoReadyNodes"
	ReasonAPIUnreachable = "APIServerUnreachable"
	ReasonNotConnected   = "NotConnected"
)

// view is what the hub knows about one child at one moment: the input of
// deriveStatus.
type view struct {
	name           string
	self           string // this hub's cluster: missions from elsewhere are local
	connected      bool
	known          bool // the child connected at least once since the hub started
	own            *linkpb.ClusterState
	connectedAt    time.Time
	disconnectedAt time.Time
	lastSeen       time.Time // last frame received
	lastReport     time.Time // last report or heartbeat that changed the facts
	hubStarted     time.Time
	parent         string
	parentPath     string
	parentDepth    int32
	readyGrace     time.Duration
	startupGrace   time.Duration
	now            time.Time
	generation     int64
	previousStatus edgev1alpha1.EdgeClusterStatus
}

// deriveStatus computes an EdgeCluster's status from what the hub knows. It is
// pure and level-based: the same view always gives the same status, and a
// status that does not change is not written. It returns when the status must
// be derived again even if nothing happens (a grace period ending), or 0.
func deriveStatus(v view) (edgev1alpha1.EdgeClusterStatus, time.Duration) {
	st := *v.previousStatus.DeepCopy()
	st.ObservedGeneration = v.generation
	st.Parent = v.parent
	st.Path = v.parentPath + "/" + v.name
	st.Depth = v.parentDepth + 1
	var requeue time.Duration

	switch {
	case v.connected:
		st.State = edgev1alpha1.StateConnected
		setCond(&st, edgev1alpha1.EdgeClusterConnected, metav1.ConditionTrue, ReasonLinkUp,
			"connected since "+v.connectedAt.UTC().Format(time.RFC3339), v.connectedAt)
		applySummary(&st, v.own, v.self)
		st.LastHeartbeatTime = timePtr(later(v.connectedAt, v.lastReport))
		if !v.lastReport.IsZero() {
			st.LastReportTime = timePtr(v.lastReport)
		}
		s := v.own.GetSummary()
		switch {
		case s == nil:
			setCond(&st, edgev1alpha1.EdgeClusterReady, metav1.ConditionUnknown, ReasonNoReportYet, "no report received yet", v.now)
		case !s.GetApiReachable():
			setCond(&st, edgev1alpha1.EdgeClusterReady, metav1.ConditionFalse, ReasonAPIUnreachable, nonEmpty(s.GetMessage(), "the agent cannot reach its API server"), v.now)
		case s.GetNodesReady() > 0:
			setCond(&st, edgev1alpha1.EdgeClusterReady, metav1.ConditionTrue, ReasonNodesReady,
				fmt.Sprintf("%d of %d nodes Ready", s.GetNodesReady(), s.GetNodesTotal()), v.now)
		default:
			setCond(&st, edgev1alpha1.EdgeClusterReady, metav1.ConditionFalse, ReasonNoReadyNodes,
				fmt.Sprintf("0 of %d nodes Ready", s.GetNodesTotal()), v.now)
		}

	case v.known:
		// The link went down while this hub was running.
		down(&st, v.lastSeen, v.disconnectedAt, v)
		requeue = readyGraceLeft(v.disconnectedAt, v)

	default:
		// Nothing heard since this hub started.
		if left := v.hubStarted.Add(v.startupGrace).Sub(v.now); left > 0 {
			// Children reconnect after a hub restart: give them the time
			// before calling them offline, instead of flapping the status.
			return v.previousStatus, left
		}
		if st.State == "" || st.State == edgev1alpha1.StatePending {
			st.State = edgev1alpha1.StatePending
			setCond(&st, edgev1alpha1.EdgeClusterConnected, metav1.ConditionFalse, ReasonNeverConnected,
				"joined but never connected: start fornaxd in the cluster", v.now)
			setCond(&st, edgev1alpha1.EdgeClusterReady, metav1.ConditionUnknown, ReasonNeverConnected,
				"no report received yet", v.now)
			break
		}
		// Down at least since this hub started; last seen as recorded.
		lastSeen := v.hubStarted
		if st.LastHeartbeatTime != nil {
			lastSeen = st.LastHeartbeatTime.Time
		}
		down(&st, lastSeen, v.hubStarted, v)
		requeue = readyGraceLeft(v.hubStarted, v)
	}
	return st, requeue
}

// down marks the link down (since downSince; last frame at lastSeen). Ready
// turns Unknown once the link has been down for the grace period, and keeps
// its last value until then.
func down(st *edgev1alpha1.EdgeClusterStatus, lastSeen, downSince time.Time, v view) {
	st.State = edgev1alpha1.StateOffline
	st.LastHeartbeatTime = timePtr(lastSeen)
	setCond(st, edgev1alpha1.EdgeClusterConnected, metav1.ConditionFalse, ReasonLinkDown,
		"link down; last seen "+lastSeen.UTC().Format(time.RFC3339), lastSeen)
	if v.now.Sub(downSince) >= v.readyGrace {
		setCond(st, edgev1alpha1.EdgeClusterReady, metav1.ConditionUnknown, ReasonNotConnected,
			"no report since "+lastSeen.UTC().Format(time.RFC3339), v.now)
	}
}

func readyGraceLeft(downSince time.Time, v view) time.Duration {
	if left := downSince.Add(v.readyGrace).Sub(v.now); left > 0 {
		return left
	}
	return 0
}

func applySummary(st *edgev1alpha1.EdgeClusterStatus, own *linkpb.ClusterState, self string) {
	s := own.GetSummary()
	if s == nil {
		return
	}
	st.KubernetesVersion = s.GetKubernetesVersion()
	st.AgentVersion = s.GetAgentVersion()
	st.Distro = edgev1alpha1.Distro(s.GetDistro())
	st.Nodes = &edgev1alpha1.NodeSummary{Total: s.GetNodesTotal(), Ready: s.GetNodesReady()}
	st.Capacity = quantities(s.GetCapacity())
	st.Allocatable = quantities(s.GetAllocatable())
	st.Missions, st.LocalMissions, st.OrphanedMissions = nil, nil, nil
	if len(own.GetMissions()) > 0 {
		sum := &edgev1alpha1.MissionSummary{}
		for _, ms := range own.GetMissions() {
			sum.Total++
			switch edgev1alpha1.ClusterPhase(ms.GetPhase()) {
			case edgev1alpha1.PhaseReady:
				sum.Ready++
			case edgev1alpha1.PhaseFailed:
				sum.Failed++
			}
			if since := ms.GetOrphanedSinceUnixMs(); since > 0 && len(st.OrphanedMissions) < 100 {
				st.OrphanedMissions = append(st.OrphanedMissions, edgev1alpha1.OrphanedMission{Namespace: ms.GetNamespace(), Name: ms.GetName(),
					Since: metav1.NewTime(time.UnixMilli(since).UTC()), DeleteAfter: metav1.NewTime(time.UnixMilli(ms.GetOrphanDeadlineUnixMs()).UTC())})
				continue
			}
			if o := ms.GetOrigin(); o != "" && o != self && len(st.LocalMissions) < 100 {
				st.LocalMissions = append(st.LocalMissions, edgev1alpha1.LocalMission{Namespace: ms.GetNamespace(),
					Name: ms.GetName(), Origin: o, Phase: edgev1alpha1.ClusterPhase(ms.GetPhase())})
			}
		}
		st.Missions = sum
	}
}

func quantities(m map[string]string) map[string]resource.Quantity {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]resource.Quantity, len(m))
	for k, v := range m {
		if q, err := resource.ParseQuantity(v); err == nil {
			out[k] = q
		}
	}
	return out
}

// builtinLabels are the labels Fornax keeps on an EdgeCluster for placement.
func builtinLabels(name, parent string, depth int32, distro edgev1alpha1.Distro) map[string]string {
	l := map[string]string{
		edgev1alpha1.LabelClusterName: name,
		edgev1alpha1.LabelParent:      parent,
		edgev1alpha1.LabelDepth:       strconv.Itoa(int(depth)),
	}
	if distro != "" {
		l[edgev1alpha1.LabelDistro] = string(distro)
	}
	return l
}

// setCond sets a condition; its transition time is at only when the status
// changes (meta.SetStatusCondition keeps the old time otherwise).
func setCond(st *edgev1alpha1.EdgeClusterStatus, typ string, status metav1.ConditionStatus, reason, msg string, at time.Time) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: st.ObservedGeneration, LastTransitionTime: metav1.NewTime(at.Truncate(time.Second)),
	})
}

func timePtr(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func nonEmpty(s, def string) string {
	if s != "" {
		return s
	}
	return def
}
