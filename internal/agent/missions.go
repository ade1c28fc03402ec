package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/apply"
	"github.com/fornax-edge/fornax/internal/install"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// The marks a parent's missions carry in the child (the same names the hub
// uses: both sides speak of the same objects).
const (
	labelFromParent            = "edge.fornax.io/from-parent"
	annotationTargets          = "edge.fornax.io/targets"
	annotationSourceGeneration = "edge.fornax.io/source-generation"
	annotationDigest           = "edge.fornax.io/sent-digest"
	annotationInventory        = "edge.fornax.io/inventory"
	annotationDrift            = "edge.fornax.io/drift-corrections"
	annotationOrigin           = "edge.fornax.io/origin"
	annotationOrphanedSince    = "edge.fornax.io/orphaned-since"
	finalizerCleanup           = "edge.fornax.io/cleanup"
	fieldManagerAgent          = "fornax-agent"
)

// SetupWithManager registers the reconciler that applies the parent's
// missions targeting this cluster.
func (a *Agent) SetupWithManager(mgr ctrl.Manager) error {
	applier, err := apply.New(a.Cluster(), mgr.GetConfig())
	if err != nil {
		return err
	}
	a.client, a.applier = mgr.GetClient(), applier
	a.watch = newObjectWatch(applier.Dynamic())
	applier.Cached = a.watch.get
	if err := mgr.Add(a.watch); err != nil {
		return err
	}
	if err := a.setupNetwork(mgr); err != nil {
		return err
	}
	fromParent := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetLabels()[labelFromParent] == "true" })
	return ctrl.NewControllerManagedBy(mgr).
		Named("mission-apply").
		For(&edgev1alpha1.Mission{}, builder.WithPredicates(fromParent)).
		WatchesRawSource(source.Channel(a.watch.events, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(reconcile.Func(a.reconcileMission))
}

// have lists the parent's missions and network objects this cluster holds,
// for Hello. An error must not be taken for "nothing": the parent would then
// never tell this cluster about deletions it missed.
func (a *Agent) have(ctx context.Context) ([]*linkpb.ObjectVersion, error) {
	missions, err := a.haveMissions(ctx)
	if err != nil {
		return nil, err
	}
	if a.client == nil {
		return missions, nil
	}
	network, err := a.haveNetwork(ctx)
	if err != nil {
		return nil, err
	}
	return append(missions, network...), nil
}

// haveMissions lists the parent's missions this cluster holds.
func (a *Agent) haveMissions(ctx context.Context) ([]*linkpb.ObjectVersion, error) {
	if a.client == nil {
		return nil, nil
	}
	list := &edgev1alpha1.MissionList{}
	if err := a.client.List(ctx, list, client.MatchingLabels{labelFromParent: "true"}); err != nil {
		return nil, fmt.Errorf("listing the missions held from the parent: %w", err)
	}
	out := make([]*linkpb.ObjectVersion, 0, len(list.Items))
	for _, m := range list.Items {
		gen, _ := strconv.ParseInt(m.Annotations[annotationSourceGeneration], 10, 64)
		out = append(out, &linkpb.ObjectVersion{Kind: "Mission", Namespace: m.Namespace, Name: m.Name,
			Generation: gen, Digest: m.Annotations[annotationDigest]})
	}
	return out, nil
}

// storeObjects keeps the parent's missions and network objects in this
// cluster's API server, where they survive restarts and a lost uplink.
// Network objects are stored first, VPCs before subnets: a subnet's VPC is
// there when the subnet is.
func (a *Agent) storeObjects(ctx context.Context, b *linkpb.ObjectBatch) error {
	for _, kind := range []string{kindVPC, kindSubnet, kindGateway} {
		for _, o := range b.GetObjects() {
			if o.GetVersion().GetKind() != kind {
				continue
			}
			if err := a.storeNetwork(ctx, o); err != nil {
				return err
			}
		}
	}
	for _, o := range b.GetObjects() {
		v := o.GetVersion()
		if v.GetKind() != "Mission" {
			if !isNetworkKind(v.GetKind()) {
				a.log.Warn("the parent sent an object of a kind this fornaxd does not know; ignored", "kind", v.GetKind(), "name", v.GetName())
			}
			continue
		}
		a.setMissionState(v.GetNamespace()+"/"+v.GetName()+"@parent", nil) // a conflict reported before, if any
		if o.GetOrphaned() {
			if err := a.markOrphaned(ctx, v.GetNamespace(), v.GetName()); err != nil {
				return err
			}
			continue
		}
		if o.GetDeleted() {
			m := &edgev1alpha1.Mission{}
			err := a.client.Get(ctx, client.ObjectKey{Namespace: v.GetNamespace(), Name: v.GetName()}, m)
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			if m.Labels[labelFromParent] != "true" {
				continue // a local mission of the same name is not the parent's to delete
			}
			if err := a.client.Delete(ctx, m); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
			continue
		}
		m := &edgev1alpha1.Mission{}
		if err := json.Unmarshal(o.GetPayload(), m); err != nil {
			return fmt.Errorf("decoding mission %s/%s from the parent: %w", v.GetNamespace(), v.GetName(), err)
		}
		existing := &edgev1alpha1.Mission{}
		err := a.client.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Name}, existing)
		if err == nil && existing.Labels[labelFromParent] != "true" {
			// This cluster's operators own a mission of that name: the parent
			// never overwrites it. Say so where the parent will see it.
			a.log.Warn("the parent sent a mission with the name of a local one; not stored", "mission", m.Namespace+"/"+m.Name)
			a.setMissionState(m.Namespace+"/"+m.Name+"@parent", &linkpb.MissionState{Namespace: m.Namespace, Name: m.Name,
				Generation: v.GetGeneration(), Origin: o.GetOrigin(), Phase: string(edgev1alpha1.PhaseFailed),
				Message: fmt.Sprintf("cluster %s has a local mission named %s/%s: rename one of them", a.Cluster(), m.Namespace, m.Name)})
			continue
		}
		if err := a.applier.EnsureNamespace(ctx, m.Namespace); err != nil {
			return fmt.Errorf("creating namespace %s: %w", m.Namespace, err)
		}
		u := &unstructured.Unstructured{}
		raw, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &u.Object); err != nil {
			return err
		}
		u.SetLabels(merge(u.GetLabels(), map[string]string{labelFromParent: "true"}))
		origin := o.GetOrigin()
		if origin == "" {
			origin = a.creds.Load().ParentName
		}
		u.SetAnnotations(map[string]string{
			annotationTargets:          strings.Join(o.GetTargets(), ","),
			annotationSourceGeneration: strconv.FormatInt(v.GetGeneration(), 10),
			annotationDigest:           v.GetDigest(),
			annotationOrigin:           origin,
		})
		// The finalizer comes with the mission, so that its resources are
		// cleaned up however soon it is deleted.
		u.SetFinalizers([]string{finalizerCleanup})
		unstructured.RemoveNestedField(u.Object, "status")
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		if err := a.client.Patch(ctx, u, client.Apply, client.FieldOwner(fieldManagerAgent), client.ForceOwnership); err != nil { //nolint:staticcheck // client.Apply with unstructured needs no apply configurations
			return fmt.Errorf("storing mission %s/%s: %w", m.Namespace, m.Name, err)
		}
		if err == nil && existing.Annotations[annotationOrphanedSince] != "" {
			// The parent knows it again (it was recreated, or the parent's
			// state came back): adopted, no longer counted down.
			patch := []byte(`{"metadata":{"annotations":{"` + annotationOrphanedSince + `":null}}}`)
			if err := a.client.Patch(ctx, existing, client.RawPatch(types.MergePatchType, patch)); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("adopting mission %s/%s again: %w", m.Namespace, m.Name, err)
			}
			a.log.Info("the parent sent an orphaned mission again: adopted", "mission", m.Namespace+"/"+m.Name)
		}
	}
	return nil
}

// markOrphaned records that the parent does not know a mission this cluster
// holds from it. The mission keeps running (and being corrected) until the
// grace period is over; reconcileMission deletes it then.
func (a *Agent) markOrphaned(ctx context.Context, namespace, name string) error {
	m := &edgev1alpha1.Mission{}
	err := a.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, m)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if m.Labels[labelFromParent] != "true" || m.Annotations[annotationOrphanedSince] != "" {
		return nil
	}
	now := time.Now().UTC()
	patch := []byte(`{"metadata":{"annotations":{"` + annotationOrphanedSince + `":"` + now.Format(time.RFC3339) + `"}}}`)
	if err := a.client.Patch(ctx, m, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("marking mission %s/%s orphaned: %w", namespace, name, err)
	}
	a.log.Warn("the parent does not know this mission (did it lose its state?): it keeps running, and is deleted after the grace period unless the parent sends it again",
		"mission", namespace+"/"+name, "deleteAfter", now.Add(a.opts.OrphanGrace).Format(time.RFC3339))
	return nil
}

// orphanDeadline returns when an orphaned mission is to be deleted.
func (a *Agent) orphanDeadline(m *edgev1alpha1.Mission) (since, deadline time.Time, ok bool) {
	raw := m.Annotations[annotationOrphanedSince]
	if raw == "" {
		return time.Time{}, time.Time{}, false
	}
	since, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		a.log.Error("unreadable orphan mark; counting from now", "mission", m.Namespace+"/"+m.Name, "value", raw)
		since = time.Now()
	}
	return since, since.Add(a.opts.OrphanGrace), true
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// reconcileMission applies one of the parent's missions if it targets this
// cluster, records its inventory, and reports its state.
func (a *Agent) reconcileMission(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	key := req.String()
	m := &edgev1alpha1.Mission{}
	if err := a.client.Get(ctx, req.NamespacedName, m); err != nil {
		if apierrors.IsNotFound(err) {
			a.forgetApply(key)
			a.setMissionState(key, nil)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	target := apply.Mission{Namespace: m.Namespace, Name: m.Name, SystemNamespace: install.Namespace}
	target.Generation, _ = strconv.ParseInt(m.Annotations[annotationSourceGeneration], 10, 64)
	var inventory []apply.Ref
	if raw := m.Annotations[annotationInventory]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &inventory); err != nil {
			a.log.Error("damaged mission inventory; starting afresh", "mission", key, "error", err.Error())
		}
	}

	if m.DeletionTimestamp != nil {
		if controllerutil.ContainsFinalizer(m, finalizerCleanup) {
			if err := a.removeResources(ctx, m, target, inventory); err != nil {
				return reconcile.Result{}, err
			}
			controllerutil.RemoveFinalizer(m, finalizerCleanup)
			if err := a.client.Update(ctx, m); err != nil {
				return reconcile.Result{}, err
			}
		}
		a.setMissionState(key, nil)
		return reconcile.Result{}, nil
	}
	orphanedSince, deleteAt, orphaned := a.orphanDeadline(m)
	if orphaned && !time.Now().Before(deleteAt) {
		a.log.Warn("deleting an orphaned mission: its grace period is over", "mission", key, "orphanedSince", orphanedSince.Format(time.RFC3339))
		if err := a.client.Delete(ctx, m); err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		return reconcile.Result{}, nil // the deletion comes back as an event
	}
	// requeue bounds a result's requeue by the orphan deadline.
	requeue := func(d time.Duration) reconcile.Result {
		if orphaned {
			d = min(d, time.Until(deleteAt)+time.Second)
		}
		return reconcile.Result{RequeueAfter: d}
	}
	if !slices.Contains(strings.Split(m.Annotations[annotationTargets], ","), a.Cluster()) {
		// Kept here for the subtree below (relayed); nothing to apply here,
		// and what an earlier placement applied here goes.
		if len(inventory) > 0 {
			if err := a.removeResources(ctx, m, target, inventory); err != nil {
				return reconcile.Result{}, err
			}
			patch := client.MergeFrom(m.DeepCopy())
			delete(m.Annotations, annotationInventory)
			if err := a.client.Patch(ctx, m, patch); err != nil {
				return reconcile.Result{}, fmt.Errorf("clearing the inventory of mission %s: %w", key, err)
			}
		}
		a.setMissionState(key, nil)
		if orphaned {
			return requeue(time.Until(deleteAt) + time.Second), nil
		}
		return reconcile.Result{}, nil
	}
	if controllerutil.AddFinalizer(m, finalizerCleanup) {
		if err := a.client.Update(ctx, m); err != nil {
			return reconcile.Result{}, err
		}
	}
	for _, r := range m.Spec.Resources {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(r.Raw); err != nil {
			a.setMissionState(key, &linkpb.MissionState{Namespace: m.Namespace, Name: m.Name, Generation: target.Generation,
				Origin: m.Annotations[annotationOrigin], Phase: string(edgev1alpha1.PhaseFailed), Message: "a resource does not decode: " + err.Error()})
			return reconcile.Result{}, nil
		}
		target.Resources = append(target.Resources, u)
	}
	// What was applied and has not changed since needs no apply: its
	// readiness is judged from the watch. Anything else is applied.
	version := strconv.FormatInt(target.Generation, 10) + "/" + m.Annotations[annotationDigest]
	res, unchanged := a.unchangedSinceApply(key, version, inventory)
	if !unchanged {
		t0 := time.Now()
		defer func() { a.log.Debug("mission applied", "mission", key, "took", time.Since(t0)) }()
		res = a.applier.Apply(ctx, target, inventory)
		applyDuration.Observe(time.Since(t0).Seconds())
		if res.Failed() {
			applies.WithLabelValues("failed").Inc()
		} else {
			applies.WithLabelValues("ok").Inc()
		}
		for _, ref := range res.Inventory {
			if gvr, err := a.applier.Resource(ref); err == nil {
				a.watch.ensure(gvr)
			}
		}
		a.recordApply(key, version, res)
	}
	// The drift count lives on the stored mission, so it survives restarts.
	drift, _ := strconv.ParseInt(m.Annotations[annotationDrift], 10, 64)
	for _, r := range res.Resources {
		if r.Drifted {
			drift++
			driftCorrections.Inc()
			a.log.Info("drift reverted", "mission", key, "object", r.Ref.String())
		}
	}
	inv, _ := json.Marshal(res.Inventory)
	if string(inv) != m.Annotations[annotationInventory] || drift > 0 && strconv.FormatInt(drift, 10) != m.Annotations[annotationDrift] {
		patch := client.MergeFrom(m.DeepCopy())
		m.Annotations[annotationInventory] = string(inv)
		if drift > 0 {
			m.Annotations[annotationDrift] = strconv.FormatInt(drift, 10)
		}
		if err := a.client.Patch(ctx, m, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("recording the inventory of mission %s: %w", key, err)
		}
	}
	state := missionState(m, target.Generation, res)
	state.DriftCorrections = drift
	if orphaned {
		state.OrphanedSinceUnixMs, state.OrphanDeadlineUnixMs = orphanedSince.UnixMilli(), deleteAt.UnixMilli()
	}
	a.setMissionState(key, state)
	// Changes to the applied objects wake the mission through the watch; the
	// requeue is a safety net (a watch that has not synced yet, a kind
	// whose readiness depends on objects Fornax does not watch).
	if state.GetPhase() != string(edgev1alpha1.PhaseReady) || jobRunning(res) {
		return requeue(10 * time.Second), nil
	}
	return requeue(5 * time.Minute), nil
}

// removeResources deletes what a mission applied here, unless its deletion
// policy is Orphan.
func (a *Agent) removeResources(ctx context.Context, m *edgev1alpha1.Mission, target apply.Mission, inventory []apply.Ref) error {
	key := m.Namespace + "/" + m.Name
	a.forgetApply(key)
	if m.Spec.DeletionPolicy == edgev1alpha1.DeletionPolicyOrphan {
		return nil
	}
	a.setMissionState(key, &linkpb.MissionState{Namespace: m.Namespace, Name: m.Name, Generation: target.Generation, Origin: m.Annotations[annotationOrigin], Phase: string(edgev1alpha1.PhaseDeleting)})
	if errs := a.applier.Delete(ctx, target, inventory); len(errs) > 0 {
		return fmt.Errorf("deleting the resources of mission %s: %v", key, errs)
	}
	return nil
}

// appliedRecord is what the last successful apply of a mission left: the
// mission version it applied and each object's apply.Version after it.
type appliedRecord struct {
	version  string
	order    []apply.Ref // the mission's resources, in its order
	versions map[apply.Ref]string
}

func (a *Agent) recordApply(key, version string, res apply.Result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if res.Failed() || len(res.Pruned) > 0 {
		delete(a.applied, key) // apply again next time
		return
	}
	rec := appliedRecord{version: version, versions: map[apply.Ref]string{}}
	for _, r := range res.Resources {
		rec.order = append(rec.order, r.Ref)
		rec.versions[r.Ref] = r.Version
	}
	a.applied[key] = rec
}

func (a *Agent) forgetApply(key string) {
	a.mu.Lock()
	delete(a.applied, key)
	a.mu.Unlock()
}

// unchangedSinceApply judges a mission from the watch when the same mission
// version was applied and no object has changed since (a status update is
// not a change): no API call. ok is false when an apply is needed (an object
// edited or deleted since: the apply reverts it and counts the drift).
func (a *Agent) unchangedSinceApply(key, version string, inventory []apply.Ref) (apply.Result, bool) {
	a.mu.Lock()
	rec, found := a.applied[key]
	a.mu.Unlock()
	if !found || rec.version != version || len(rec.versions) != len(inventory) {
		return apply.Result{}, false
	}
	res := apply.Result{Inventory: inventory}
	for _, ref := range rec.order {
		gvr, err := a.applier.Resource(ref)
		if err != nil {
			return apply.Result{}, false
		}
		obj, seen := a.watch.get(gvr, ref.Namespace, ref.Name)
		if !seen || apply.Version(obj) != rec.versions[ref] {
			return apply.Result{}, false
		}
		res.Resources = append(res.Resources, apply.Judge(ref, obj))
	}
	return res, true
}

// jobRunning reports whether a Job of the mission has started but not yet
// completed: kstatus calls it Current, but its completion is worth reporting soon.
func jobRunning(res apply.Result) bool {
	for _, r := range res.Resources {
		if r.Ref.Group == "batch" && r.Ref.Kind == "Job" && r.Err == "" && !r.Complete {
			return true
		}
	}
	return false
}

// MissionState returns the state of a parent's mission in this cluster, or
// nil if it is not applied here.
func (a *Agent) MissionState(namespace, name string) *linkpb.MissionState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.missions[namespace+"/"+name]
}

// missionState summarises an apply result for the parent.
func missionState(m *edgev1alpha1.Mission, generation int64, res apply.Result) *linkpb.MissionState {
	s := &linkpb.MissionState{Namespace: m.Namespace, Name: m.Name, Generation: generation, Origin: m.Annotations[annotationOrigin]}
	for _, r := range res.Resources {
		rs := &linkpb.ResourceState{ApiVersion: schemaGV(r.Ref), Kind: r.Ref.Kind, Namespace: r.Ref.Namespace, Name: r.Ref.Name,
			Status: string(r.Status), Message: r.Message}
		if r.Err != "" {
			rs.Status, rs.Message = "Failed", r.Err
			if s.Message == "" {
				s.Message = r.Err
			}
		}
		if r.Complete {
			rs.Status = "Complete"
		}
		s.Resources = append(s.Resources, rs)
	}
	switch {
	case res.Failed():
		s.Phase = string(edgev1alpha1.PhaseFailed)
	case res.Ready():
		s.Phase = string(edgev1alpha1.PhaseReady)
	default:
		s.Phase = string(edgev1alpha1.PhaseApplied)
	}
	return s
}

func schemaGV(r apply.Ref) string {
	if r.Group == "" {
		return r.Version
	}
	return r.Group + "/" + r.Version
}

// setMissionState records a mission's state for the next report (nil: gone).
func (a *Agent) setMissionState(key string, s *linkpb.MissionState) {
	a.mu.Lock()
	old := a.missions[key]
	if s == nil {
		delete(a.missions, key)
	} else {
		a.missions[key] = s
	}
	a.mu.Unlock()
	if (old == nil) != (s == nil) || (s != nil && !protoEqual(old, s)) {
		a.markDirty()
	}
}

// missionStates returns the states to report, sorted.
func (a *Agent) missionStates() []*linkpb.MissionState {
	a.mu.Lock()
	defer a.mu.Unlock()
	keys := make([]string, 0, len(a.missions))
	for k := range a.missions {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]*linkpb.MissionState, 0, len(keys))
	orphans := 0
	for _, k := range keys {
		out = append(out, a.missions[k])
		if a.missions[k].GetOrphanedSinceUnixMs() > 0 {
			orphans++
		}
	}
	orphanedMissions.Set(float64(orphans))
	return out
}
