package hub

import (
	"context"
	"fmt"
	corev1 "k8s.io/api/core/v1"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
	"github.com/fornax-edge/fornax/internal/placement"
)

// missionView is what the hub knows of one mission in one targeted cluster.
type missionView struct {
	connected bool
	since     time.Time // when the cluster was last heard from, if not connected
	state     *linkpb.MissionState
}

// deriveMissionStatus computes a mission's status from its targets and what
// they report. It is pure. Entries keep their LastUpdateTime while nothing in
// them changes, so an idle mission's status does not change.
func deriveMissionStatus(m *edgev1alpha1.Mission, targets []string, selErr error, views map[string]missionView, now time.Time) edgev1alpha1.MissionStatus {
	st := edgev1alpha1.MissionStatus{ObservedGeneration: m.Generation, Conditions: m.Status.DeepCopy().Conditions}
	cond := func(typ string, s metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: typ, Status: s, Reason: reason, Message: msg,
			ObservedGeneration: m.Generation, LastTransitionTime: metav1.NewTime(now.Truncate(time.Second))})
	}
	if selErr != nil {
		cond(edgev1alpha1.MissionAccepted, metav1.ConditionFalse, "InvalidPlacement", selErr.Error())
		cond(edgev1alpha1.MissionReady, metav1.ConditionFalse, "InvalidPlacement", "no cluster can be selected")
		return st
	}
	cond(edgev1alpha1.MissionAccepted, metav1.ConditionTrue, "Placed", fmt.Sprintf("%d clusters selected", len(targets)))
	previous := map[string]edgev1alpha1.ClusterStatus{}
	for _, c := range m.Status.Clusters {
		previous[c.Cluster] = c
	}
	entries := make([]edgev1alpha1.ClusterStatus, 0, len(targets))
	for _, t := range targets {
		v := views[t]
		e := edgev1alpha1.ClusterStatus{Cluster: t}
		switch {
		case !v.connected:
			e.Phase = edgev1alpha1.PhaseUnknown
			e.Message = "cluster unreachable; unknown since " + v.since.UTC().Format(time.RFC3339)
			if v.state != nil {
				e.Generation = v.state.GetGeneration()
			}
		case v.state == nil:
			e.Phase, e.Message = edgev1alpha1.PhasePending, "not yet applied"
		case v.state.GetGeneration() != m.Generation:
			e.Phase = edgev1alpha1.PhasePending
			e.Message = fmt.Sprintf("generation %d applied, %d on its way", v.state.GetGeneration(), m.Generation)
			e.Generation = v.state.GetGeneration()
		default:
			e.Phase = edgev1alpha1.ClusterPhase(v.state.GetPhase())
			e.Message = v.state.GetMessage()
			e.Generation = v.state.GetGeneration()
			e.DriftCorrections = v.state.GetDriftCorrections()
			for _, r := range v.state.GetResources() {
				e.Resources = append(e.Resources, edgev1alpha1.ResourceStatus{APIVersion: r.GetApiVersion(), Kind: r.GetKind(),
					Namespace: r.GetNamespace(), Name: r.GetName(), Status: r.GetStatus(), Message: r.GetMessage()})
			}
		}
		if p, ok := previous[t]; ok && p.LastUpdateTime != nil && sameEntry(p, e) {
			e.LastUpdateTime = p.LastUpdateTime
		} else {
			e.LastUpdateTime = timePtr(now)
		}
		switch e.Phase {
		case edgev1alpha1.PhaseReady:
			st.Summary.Ready++
			st.Summary.Applied++
		case edgev1alpha1.PhaseApplied:
			st.Summary.Applied++
		case edgev1alpha1.PhaseFailed:
			st.Summary.Failed++
		case edgev1alpha1.PhaseUnknown:
			st.Summary.Unknown++
		}
		entries = append(entries, e)
	}
	st.Summary.Targeted = int32(len(targets))
	// Failures first, then unknown, then the rest; by name within each.
	rank := map[edgev1alpha1.ClusterPhase]int{edgev1alpha1.PhaseFailed: 0, edgev1alpha1.PhaseUnknown: 1}
	sort.SliceStable(entries, func(i, j int) bool {
		ri, ok := rank[entries[i].Phase]
		if !ok {
			ri = 2
		}
		rj, ok := rank[entries[j].Phase]
		if !ok {
			rj = 2
		}
		if ri != rj {
			return ri < rj
		}
		return entries[i].Cluster < entries[j].Cluster
	})
	if len(entries) > edgev1alpha1.MaxClusterStatuses {
		st.ClustersOmitted = int32(len(entries) - edgev1alpha1.MaxClusterStatuses)
		entries = entries[:edgev1alpha1.MaxClusterStatuses]
	}
	st.Clusters = entries
	switch s := st.Summary; {
	case s.Targeted == 0:
		cond(edgev1alpha1.MissionReady, metav1.ConditionFalse, "NoClusters", "the placement selects no cluster")
	case s.Failed > 0:
		cond(edgev1alpha1.MissionReady, metav1.ConditionFalse, "Failed", fmt.Sprintf("%d of %d clusters failed", s.Failed, s.Targeted))
	case s.Unknown > 0:
		cond(edgev1alpha1.MissionReady, metav1.ConditionUnknown, "ClustersUnreachable", fmt.Sprintf("%d of %d clusters unreachable", s.Unknown, s.Targeted))
	case s.Ready == s.Targeted:
		cond(edgev1alpha1.MissionReady, metav1.ConditionTrue, "Ready", fmt.Sprintf("ready in all %d clusters", s.Targeted))
	default:
		cond(edgev1alpha1.MissionReady, metav1.ConditionFalse, "Progressing", fmt.Sprintf("ready in %d of %d clusters", s.Ready, s.Targeted))
	}
	return st
}

func sameEntry(a, b edgev1alpha1.ClusterStatus) bool {
	a.LastUpdateTime, b.LastUpdateTime = nil, nil
	return equality.Semantic.DeepEqual(a, b)
}

// missionViews gathers what the children report of a mission in each
// target (and, for a middle cluster targeted itself, its own state). Only
// states of this mission's origin count: a mission of the same name created
// at a cluster below is another mission.
func (h *Hub) missionViews(m *edgev1alpha1.Mission, targets []string) map[string]missionView {
	_, origin := h.missionSource(m)
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]missionView{}
	for _, t := range targets {
		if t == h.opts.Name {
			v := missionView{connected: true}
			if h.opts.LocalMissionState != nil {
				v.state = h.opts.LocalMissionState(m.Namespace, m.Name)
			}
			out[t] = v
			continue
		}
		// Not reported yet (never connected, or this hub just restarted):
		// Pending, not Unknown.
		v := missionView{connected: true}
		if childName, c, s := h.locate(t); c != nil && s != nil {
			v.connected = c.session != nil && (childName == t || s.GetConnected())
			v.since = c.lastSeen
			if !s.GetConnected() && childName != t && s.GetLastSeenUnixMs() > 0 {
				v.since = time.UnixMilli(s.GetLastSeenUnixMs())
			}
			for _, ms := range s.GetMissions() {
				if ms.GetNamespace() == m.Namespace && ms.GetName() == m.Name && (ms.GetOrigin() == origin || ms.GetOrigin() == "") {
					v.state = ms
				}
			}
		}
		out[t] = v
	}
	return out
}

// FinalizerDelivery holds a deleted mission until every cluster below that
// may hold it has confirmed its deletion.
const FinalizerDelivery = "edge.fornax.io/delivery"

// finishDeletion releases a deleted mission once no child may hold it, and
// says whom it waits for meanwhile.
func (h *Hub) finishDeletion(ctx context.Context, m *edgev1alpha1.Mission, clusters []placement.Cluster) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(m, FinalizerDelivery) {
		return reconcile.Result{}, nil
	}
	waiting, offline := h.deletionHolders(m, clusters)
	if len(waiting) == 0 {
		controllerutil.RemoveFinalizer(m, FinalizerDelivery)
		if err := h.client.Update(ctx, m); err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("releasing mission %s/%s: %w", m.Namespace, m.Name, err)
		}
		h.log.Info("mission deleted below", "mission", m.Namespace+"/"+m.Name)
		h.record(m, []kubeEvent{{corev1.EventTypeNormal, "DeletedBelow", "every cluster below that held it has deleted it"}})
		return reconcile.Result{}, nil
	}
	msg := "waiting for " + strings.Join(waiting, ", ") + " to confirm the deletion"
	if offline {
		msg += " (an offline cluster confirms when it reconnects; 'fornaxctl remove cluster' releases it)"
	}
	cond := metav1.Condition{Type: edgev1alpha1.MissionDeleting, Status: metav1.ConditionTrue, Reason: "WaitingForClusters",
		Message: msg, ObservedGeneration: m.Generation, LastTransitionTime: metav1.NewTime(time.Now())}
	if c := meta.FindStatusCondition(m.Status.Conditions, cond.Type); c == nil || c.Message != msg {
		h.record(m, []kubeEvent{{corev1.EventTypeNormal, "WaitingForClusters", msg}})
		meta.SetStatusCondition(&m.Status.Conditions, cond)
		if err := h.client.Status().Update(ctx, m); err != nil && !apierrors.IsNotFound(err) {
			// Another writer (the agent's status at a middle cluster) got
			// there first: read again shortly, without an error in the log.
			return requeueOnConflict(fmt.Errorf("updating status of mission %s/%s: %w", m.Namespace, m.Name, err))
		}
		statusWrites.Inc()
	}
	if offline {
		return reconcile.Result{RequeueAfter: 30 * time.Second}, nil // a reconnect also wakes it
	}
	return reconcile.Result{RequeueAfter: 2 * time.Second}, nil // an acknowledgement also wakes it
}

// deletionHolders returns the children that may still hold a deleted
// mission: a connected child until it has acknowledged the deletion; a
// disconnected one if the mission's status shows a cluster of its subtree.
func (h *Hub) deletionHolders(m *edgev1alpha1.Mission, clusters []placement.Cluster) (holders []string, offline bool) {
	key := missionKey(m.Namespace, m.Name)
	self := strings.Split(h.path(), "/")
	nextHop := map[string]string{}
	for _, c := range clusters {
		if len(c.Path) > len(self) && slices.Equal(c.Path[:len(self)], self) {
			nextHop[c.Name] = c.Path[len(self)]
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	add := func(name string, off bool) {
		if !seen[name] {
			seen[name] = true
			holders = append(holders, name)
			offline = offline || off
		}
	}
	for name, c := range h.children {
		if c.session == nil {
			continue
		}
		_, sent := c.session.sent[key]
		_, unacked := c.session.deleting[key]
		if sent && c.session.sent[key] != orphanNotice || unacked {
			add(name, false)
		}
	}
	connected := func(child string) bool { c := h.children[child]; return c != nil && c.session != nil }
	for _, e := range m.Status.Clusters {
		if hop, ok := nextHop[e.Cluster]; ok && !connected(hop) {
			add(hop, true)
		}
	}
	if m.Status.ClustersOmitted > 0 { // the status does not name them all: every offline child may hold it
		for _, c := range clusters {
			if hop := nextHop[c.Name]; hop == c.Name && !connected(hop) {
				add(hop, true)
			}
		}
	}
	slices.Sort(holders)
	return holders, offline
}

// missionPassInterval is the least time between two passes over every
// mission's status caused by cluster changes.
const missionPassInterval = 200 * time.Millisecond

// setupMissions registers the Mission reconciler: it delivers missions to
// the children and keeps their status.
func (h *Hub) setupMissions(mgr manager.Manager) error {
	events := make(chan event.TypedGenericEvent[*edgev1alpha1.Mission], 1024)
	go func() {
		for range h.missionsChanged {
			list := &edgev1alpha1.MissionList{}
			if err := mgr.GetClient().List(context.Background(), list); err != nil {
				continue
			}
			for i := range list.Items {
				events <- event.TypedGenericEvent[*edgev1alpha1.Mission]{Object: &list.Items[i]}
			}
			// Paced: when thousands of clusters change at once (a mass
			// disconnect, a reconnect storm), every mission's status is
			// computed a few times a second, not once per change, each pass
			// going over every target under the hub's lock. Changes in the
			// meantime coalesce into the next pass.
			time.Sleep(missionPassInterval)
		}
	}()
	if err := mgr.Add(manager.RunnableFunc(h.syncLoop)); err != nil {
		return err
	}
	return ctrl.ControllerManagedBy(mgr).
		Named("mission").
		For(&edgev1alpha1.Mission{}).
		WatchesRawSource(source.Channel(events, &handler.TypedEnqueueRequestForObject[*edgev1alpha1.Mission]{})).
		Complete(reconcile.Func(h.reconcileMission))
}

// deliveryVersion names what of a mission travels down the tree: a change
// to it needs a delivery pass.
func deliveryVersion(m *edgev1alpha1.Mission) string {
	labels := make([]string, 0, len(m.Labels))
	for k, v := range m.Labels {
		labels = append(labels, k+"="+v)
	}
	slices.Sort(labels)
	return fmt.Sprintf("%s|%d|%t|%s", m.UID, m.Generation, m.DeletionTimestamp != nil, strings.Join(labels, ","))
}

// deliverIfChanged asks for a delivery pass when a mission's delivery
// version differs from the one last seen ("" for a deleted mission).
func (h *Hub) deliverIfChanged(key, version string) {
	h.mu.Lock()
	old := h.delivered[key]
	if version == "" {
		delete(h.delivered, key)
	} else {
		h.delivered[key] = version
	}
	h.mu.Unlock()
	if old != version {
		h.requestSync()
	}
}

// notifyMissions asks for every mission to be looked at again.
func (h *Hub) notifyMissions() {
	select {
	case h.missionsChanged <- struct{}{}:
	default: // one pending request covers this one
	}
}

func (h *Hub) reconcileMission(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	m := &edgev1alpha1.Mission{}
	if err := h.client.Get(ctx, req.NamespacedName, m); err != nil {
		if apierrors.IsNotFound(err) {
			h.deliverIfChanged(req.String(), "")
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	// A new, changed or deleted mission travels down (coalesced); a status
	// change does not.
	h.deliverIfChanged(req.String(), deliveryVersion(m))
	clusters, err := h.clustersBelow(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	if m.DeletionTimestamp != nil {
		return h.finishDeletion(ctx, m, clusters)
	}
	targets, selErr := h.missionTargets(m, clusters)
	// Once a mission goes below, its deletion must reach every cluster that
	// holds it, even one offline when it is deleted: the finalizer keeps the
	// mission (terminating) until they confirm.
	if slices.ContainsFunc(targets, func(t string) bool { return t != h.opts.Name }) && controllerutil.AddFinalizer(m, FinalizerDelivery) {
		if err := h.client.Update(ctx, m); err != nil {
			return reconcile.Result{}, fmt.Errorf("adding the delivery finalizer to mission %s: %w", req.NamespacedName, err)
		}
	}
	desired := deriveMissionStatus(m, targets, selErr, h.missionViews(m, targets), time.Now())
	if fromParent(m) {
		_, origin := h.missionSource(m)
		relayed := metav1.Condition{Type: edgev1alpha1.MissionRelayed, Status: metav1.ConditionTrue, Reason: "RelayedOnly",
			Message:            fmt.Sprintf("created at %s; relayed to %d clusters below, not applied here", origin, len(targets)),
			ObservedGeneration: m.Generation, LastTransitionTime: metav1.NewTime(time.Now())}
		if slices.Contains(targets, h.opts.Name) {
			relayed.Status, relayed.Reason = metav1.ConditionFalse, "AppliedHere"
			relayed.Message = fmt.Sprintf("created at %s; applied here and relayed to %d clusters below", origin, len(targets)-1)
		}
		meta.SetStatusCondition(&desired.Conditions, relayed)
	}
	if equality.Semantic.DeepEqual(desired, m.Status) {
		return reconcile.Result{}, nil
	}
	// An update, not a merge patch: a patch would leave out summary counts
	// that are zero on both sides, and the schema requires them all.
	before := m.Status.Conditions
	m.Status = desired
	if err := h.client.Status().Update(ctx, m); err != nil {
		return requeueOnConflict(fmt.Errorf("updating status of mission %s: %w", req.NamespacedName, err))
	}
	statusWrites.Inc()
	h.record(m, conditionEvents(before, desired.Conditions, edgev1alpha1.MissionReady))
	return reconcile.Result{}, nil
}
