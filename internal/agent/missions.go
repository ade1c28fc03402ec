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
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
	if err := mgr.Add(a.watch); err != nil {
		return err
	}
	fromParent := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetLabels()[labelFromParent] == "true" })
	return ctrl.NewControllerManagedBy(mgr).
		Named("mission-apply").
		For(&edgev1alpha1.Mission{}, builder.WithPredicates(fromParent)).
		WatchesRawSource(source.Channel(a.watch.events, &handler.EnqueueRequestForObject{})).
		Complete(reconcile.Func(a.reconcileMission))
}

// have lists the parent's missions this cluster holds, for Hello.
func (a *Agent) have(ctx context.Context) []*linkpb.ObjectVersion {
	if a.client == nil {
		return nil
	}
	list := &edgev1alpha1.MissionList{}
	if err := a.client.List(ctx, list, client.MatchingLabels{labelFromParent: "true"}); err != nil {
		return nil
	}
	out := make([]*linkpb.ObjectVersion, 0, len(list.Items))
	for _, m := range list.Items {
		gen, _ := strconv.ParseInt(m.Annotations[annotationSourceGeneration], 10, 64)
		out = append(out, &linkpb.ObjectVersion{Kind: "Mission", Namespace: m.Namespace, Name: m.Name,
			Generation: gen, Digest: m.Annotations[annotationDigest]})
	}
	return out
}

// storeObjects keeps the parent's missions in this cluster's API server, where
// they survive restarts and a lost uplink.
func (a *Agent) storeObjects(ctx context.Context, b *linkpb.ObjectBatch) error {
	for _, o := range b.GetObjects() {
		v := o.GetVersion()
		if v.GetKind() != "Mission" {
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
		if err := a.ensureNamespace(ctx, m.Namespace); err != nil {
			return err
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
		u.SetAnnotations(map[string]string{
			annotationTargets:          strings.Join(o.GetTargets(), ","),
			annotationSourceGeneration: strconv.FormatInt(v.GetGeneration(), 10),
			annotationDigest:           v.GetDigest(),
		})
		unstructured.RemoveNestedField(u.Object, "status")
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		if err := a.client.Patch(ctx, u, client.Apply, client.FieldOwner(fieldManagerAgent), client.ForceOwnership); err != nil { //nolint:staticcheck // client.Apply with unstructured needs no apply configurations
			return fmt.Errorf("storing mission %s/%s: %w", m.Namespace, m.Name, err)
		}
	}
	return nil
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

func (a *Agent) ensureNamespace(ctx context.Context, ns string) error {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind("Namespace")
	u.SetName(ns)
	err := a.client.Create(ctx, u)
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	return nil
}

// reconcileMission applies one of the parent's missions if it targets this
// cluster, records its inventory, and reports its state.
func (a *Agent) reconcileMission(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	key := req.String()
	m := &edgev1alpha1.Mission{}
	if err := a.client.Get(ctx, req.NamespacedName, m); err != nil {
		if apierrors.IsNotFound(err) {
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
			if m.Spec.DeletionPolicy != edgev1alpha1.DeletionPolicyOrphan {
				a.setMissionState(key, &linkpb.MissionState{Namespace: m.Namespace, Name: m.Name, Generation: target.Generation, Phase: string(edgev1alpha1.PhaseDeleting)})
				if errs := a.applier.Delete(ctx, target, inventory); len(errs) > 0 {
					return reconcile.Result{}, fmt.Errorf("deleting the resources of mission %s: %v", key, errs)
				}
			}
			controllerutil.RemoveFinalizer(m, finalizerCleanup)
			if err := a.client.Update(ctx, m); err != nil {
				return reconcile.Result{}, err
			}
		}
		a.setMissionState(key, nil)
		return reconcile.Result{}, nil
	}
	if !slices.Contains(strings.Split(m.Annotations[annotationTargets], ","), a.Cluster()) {
		// Kept here for the subtree below (relayed); nothing to apply here.
		a.setMissionState(key, nil)
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
				Phase: string(edgev1alpha1.PhaseFailed), Message: "a resource does not decode: " + err.Error()})
			return reconcile.Result{}, nil
		}
		target.Resources = append(target.Resources, u)
	}
	res := a.applier.Apply(ctx, target, inventory)
	for _, ref := range res.Inventory {
		if gvr, err := a.applier.Resource(ref); err == nil {
			a.watch.ensure(gvr)
		}
	}
	// The drift count lives on the stored mission, so it survives restarts.
	drift, _ := strconv.ParseInt(m.Annotations[annotationDrift], 10, 64)
	for _, r := range res.Resources {
		if r.Drifted {
			drift++
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
	a.setMissionState(key, state)
	// Changes to the applied objects wake the mission through the watch; the
	// requeue is a safety net (a watch that has not synced yet, a kind
	// whose readiness depends on objects Fornax does not watch).
	if state.GetPhase() != string(edgev1alpha1.PhaseReady) || jobRunning(res) {
		return reconcile.Result{RequeueAfter: 5 * time.Second}, nil
	}
	return reconcile.Result{RequeueAfter: 5 * time.Minute}, nil
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

// missionState summarises an apply result for the parent.
func missionState(m *edgev1alpha1.Mission, generation int64, res apply.Result) *linkpb.MissionState {
	s := &linkpb.MissionState{Namespace: m.Namespace, Name: m.Name, Generation: generation}
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
	for _, k := range keys {
		out = append(out, a.missions[k])
	}
	return out
}
