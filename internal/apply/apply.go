// Package apply puts a mission's manifests into a cluster with server-side
// apply (client-go's dynamic client and a RESTMapper; no kubectl, no shell),
// keeps an inventory of what each mission applied so that removed resources
// are pruned, refuses to take over objects Fornax did not create, and judges
// readiness with kstatus.
package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// FieldManager is the server-side apply field manager of mission resources.
const FieldManager = "fornax"

// Marks on every object a mission applied.
const (
	// LabelMission holds a hash of the mission's namespace and name: label
	// values are too short for the name itself.
	LabelMission = "edge.fornax.io/mission"
	// AnnotationMission holds the mission's "namespace/name".
	AnnotationMission = "edge.fornax.io/mission"
	// AnnotationGeneration holds the mission generation that last applied it.
	AnnotationGeneration = "edge.fornax.io/mission-generation"
)

// Mission is what to apply for one mission.
type Mission struct {
	Namespace, Name string
	Generation      int64
	Resources       []*unstructured.Unstructured
	// SystemNamespace is the only namespace whose missions may carry
	// cluster-scoped resources.
	SystemNamespace string
}

func (m Mission) ref() string { return m.Namespace + "/" + m.Name }

// MissionHash is the value of LabelMission for a mission.
func MissionHash(namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	return hex.EncodeToString(sum[:])[:40]
}

// Ref names one applied object.
type Ref struct {
	Group, Version, Kind string
	Namespace, Name      string
}

func (r Ref) String() string {
	gk := r.Kind
	if r.Group != "" {
		gk += "." + r.Group
	}
	if r.Namespace != "" {
		return gk + " " + r.Namespace + "/" + r.Name
	}
	return gk + " " + r.Name
}

// ResourceResult is the outcome for one resource.
type ResourceResult struct {
	Ref Ref
	// Err is why it could not be applied; empty when it was.
	Err string
	// Status is kstatus's verdict (Current, InProgress, Failed, ...) when applied.
	Status  status.Status
	Message string
	// Complete is true for a Job that has completed. kstatus calls a started
	// Job Current; a mission's Job is done only when it completes.
	Complete bool
	// Drifted is true when this apply reverted a change someone else made to
	// the object since the same mission generation applied it.
	Drifted bool
	// Version is the object's Version as applied (empty when not applied).
	Version string
	// recreated is true when the object did not exist before this apply.
	recreated bool
}

// Result is the outcome of applying one mission.
type Result struct {
	Resources []ResourceResult
	// Inventory is every object the mission now owns in the cluster.
	Inventory []Ref
	Pruned    []Ref
}

// Failed reports whether any resource could not be applied or failed.
func (r Result) Failed() bool {
	for _, res := range r.Resources {
		if res.Err != "" || res.Status == status.FailedStatus {
			return true
		}
	}
	return false
}

// Ready reports whether every resource is applied and Current.
func (r Result) Ready() bool {
	for _, res := range r.Resources {
		if res.Err != "" || res.Status != status.CurrentStatus {
			return false
		}
	}
	return true
}

// Applier applies missions to one cluster.
type Applier struct {
	cluster string
	dyn     dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper

	// Cached, when set, returns an object of the cluster as a watch last saw
	// it (ok false when the watch has not seen it or does not cover the
	// kind). Objects Fornax owns are then not read before each apply.
	Cached func(gvr schema.GroupVersionResource, namespace, name string) (obj *unstructured.Unstructured, ok bool)

	namespaces sync.Map // namespaces known to exist
}

// New returns an applier for the cluster cfg points at, named cluster in
// messages.
func New(cluster string, cfg *rest.Config) (*Applier, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Applier{cluster: cluster, dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// mapping finds the API of a kind, refreshing discovery once if it is unknown
// (a CRD installed since).
func (a *Applier) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("no kind %s in group %q version %s in cluster %s", gvk.Kind, gvk.Group, gvk.Version, a.cluster)
	}
	return m, err
}

func (a *Applier) resource(m *meta.RESTMapping, namespace string) dynamic.ResourceInterface {
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.dyn.Resource(m.Resource).Namespace(namespace)
	}
	return a.dyn.Resource(m.Resource)
}

// Apply makes the cluster hold exactly m's resources: each is applied with
// server-side apply, and objects of the previous inventory that m no longer
// carries are deleted. A resource that fails does not stop the others.
func (a *Applier) Apply(ctx context.Context, m Mission, inventory []Ref) Result {
	var res Result
	keep := map[Ref]bool{}
	for _, u := range m.Resources {
		rr := a.applyOne(ctx, m, u.DeepCopy())
		if rr.recreated && isOwnedRef(inventory, rr.Ref) {
			rr.Drifted = true // it had been applied, and someone deleted it
		}
		res.Resources = append(res.Resources, rr)
		if rr.Err == "" || isOwnedRef(inventory, rr.Ref) {
			keep[rr.Ref] = true
		}
	}
	for _, ref := range inventory {
		if keep[ref] {
			continue
		}
		if err := a.deleteOwned(ctx, m, ref); err != nil {
			// Keep it in the inventory to retry next time.
			keep[ref] = true
			res.Resources = append(res.Resources, ResourceResult{Ref: ref, Err: "pruning: " + err.Error()})
			continue
		}
		res.Pruned = append(res.Pruned, ref)
	}
	for ref := range keep {
		res.Inventory = append(res.Inventory, ref)
	}
	slices.SortFunc(res.Inventory, func(x, y Ref) int { return strings.Compare(x.String(), y.String()) })
	return res
}

func isOwnedRef(inv []Ref, r Ref) bool { return slices.Contains(inv, r) }

func (a *Applier) applyOne(ctx context.Context, m Mission, u *unstructured.Unstructured) ResourceResult {
	gvk := u.GroupVersionKind()
	ref := Ref{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Name: u.GetName()}
	fail := func(format string, args ...any) ResourceResult {
		return ResourceResult{Ref: ref, Err: fmt.Sprintf(format, args...)}
	}
	mapping, err := a.mapping(gvk)
	if err != nil {
		return fail("%v", err)
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ref.Namespace = m.Namespace
		u.SetNamespace(m.Namespace)
		if err := a.EnsureNamespace(ctx, m.Namespace); err != nil {
			return fail("creating namespace %s: %v", m.Namespace, err)
		}
	} else if m.Namespace != m.SystemNamespace {
		return fail("%s is cluster-scoped: only missions in namespace %s may carry cluster-scoped resources", ref, m.SystemNamespace)
	}
	ri := a.resource(mapping, ref.Namespace)

	// No silent takeover: an existing object must be this mission's. One
	// the watch shows as the mission's need not be read again.
	var existing *unstructured.Unstructured
	if a.Cached != nil {
		if c, ok := a.Cached(mapping.Resource, ref.Namespace, ref.Name); ok && c.GetAnnotations()[AnnotationMission] == m.ref() {
			existing = c
		}
	}
	if existing == nil {
		existing, err = ri.Get(ctx, u.GetName(), metav1.GetOptions{})
	}
	switch {
	case apierrors.IsNotFound(err):
		existing = nil
	case err != nil:
		return fail("reading %s: %v", ref, err)
	case existing.GetAnnotations()[AnnotationMission] != m.ref():
		owner := existing.GetAnnotations()[AnnotationMission]
		if owner == "" {
			return fail("%s already exists in cluster %s and was not created by Fornax: refusing to take it over (delete it, or rename it in the mission)", ref, a.cluster)
		}
		return fail("%s already exists in cluster %s and belongs to mission %s", ref, a.cluster, owner)
	}

	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelMission] = MissionHash(m.Namespace, m.Name)
	u.SetLabels(labels)
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationMission] = m.ref()
	ann[AnnotationGeneration] = fmt.Sprint(m.Generation)
	u.SetAnnotations(ann)
	body, err := u.MarshalJSON()
	if err != nil {
		return fail("encoding %s: %v", ref, err)
	}
	force := true // Fornax owns the fields it sets: drift by others is reverted
	applied, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: FieldManager, Force: &force})
	if apierrors.IsNotFound(err) && ref.Namespace != "" {
		a.forgetNamespace(ref.Namespace) // deleted since: create it again next time
	}
	if err != nil {
		return fail("cluster %s refused %s: %v", a.cluster, ref, apiMessage(err))
	}
	rr := ResourceResult{Ref: ref, Drifted: drifted(existing, applied, m.Generation), Version: Version(applied), recreated: existing == nil}
	rr.judge(applied)
	return rr
}

// Version identifies the state of an object's desired fields: its generation
// where it has one (so status updates do not count), else its resource
// version. An object whose Version is what an apply left needs no re-apply.
func Version(obj *unstructured.Unstructured) string {
	if g := obj.GetGeneration(); g > 0 {
		return fmt.Sprintf("g%d", g)
	}
	return "rv" + obj.GetResourceVersion()
}

// Judge returns the readiness of an applied object as a watch sees it,
// without writing anything.
func Judge(ref Ref, obj *unstructured.Unstructured) ResourceResult {
	rr := ResourceResult{Ref: ref, Version: Version(obj)}
	rr.judge(obj)
	return rr
}

// drifted tells whether re-applying the same mission generation changed the
// object: its generation moved (objects with a spec), or, for objects without
// one (ConfigMaps, Secrets), its resource version.
func drifted(before, after *unstructured.Unstructured, generation int64) bool {
	if before == nil || before.GetAnnotations()[AnnotationGeneration] != fmt.Sprint(generation) {
		return false // new, or a new generation of the mission: a change, not drift
	}
	if before.GetGeneration() > 0 {
		return after.GetGeneration() != before.GetGeneration()
	}
	return after.GetResourceVersion() != before.GetResourceVersion()
}

// judge sets the readiness of an object as it is in the cluster.
func (rr *ResourceResult) judge(obj *unstructured.Unstructured) {
	st, err := status.Compute(obj)
	if err != nil {
		rr.Status, rr.Message = status.UnknownStatus, err.Error()
		return
	}
	rr.Status, rr.Message = st.Status, st.Message
	if rr.Ref.Group == "batch" && rr.Ref.Kind == "Job" {
		conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
		for _, c := range conds {
			if cm, ok := c.(map[string]any); ok && cm["type"] == "Complete" && cm["status"] == "True" {
				rr.Complete = true
			}
		}
	}
}

func apiMessage(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return se.Status().Message
	}
	return err.Error()
}

// EnsureNamespace creates a namespace unless it is known to exist.
func (a *Applier) EnsureNamespace(ctx context.Context, ns string) error {
	if _, ok := a.namespaces.Load(ns); ok {
		return nil
	}
	nsGVR := corev1.SchemeGroupVersion.WithResource("namespaces")
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
	_, err := a.dyn.Resource(nsGVR).Create(ctx, obj, metav1.CreateOptions{FieldManager: FieldManager})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	a.namespaces.Store(ns, true)
	return nil
}

// forgetNamespace drops a namespace from the known ones (it was deleted).
func (a *Applier) forgetNamespace(ns string) { a.namespaces.Delete(ns) }

// deleteOwned deletes an object if it still belongs to the mission.
func (a *Applier) deleteOwned(ctx context.Context, m Mission, ref Ref) error {
	mapping, err := a.mapping(schema.GroupVersionKind{Group: ref.Group, Version: ref.Version, Kind: ref.Kind})
	if err != nil {
		return err
	}
	ri := a.resource(mapping, ref.Namespace)
	obj, err := ri.Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if obj.GetAnnotations()[AnnotationMission] != m.ref() {
		return nil // no longer ours: leave it
	}
	propagation := metav1.DeletePropagationBackground
	err = ri.Delete(ctx, ref.Name, metav1.DeleteOptions{PropagationPolicy: &propagation,
		Preconditions: &metav1.Preconditions{UID: ptr(obj.GetUID())}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// Delete removes everything in the inventory that still belongs to the
// mission (deletion policy Delete).
func (a *Applier) Delete(ctx context.Context, m Mission, inventory []Ref) []error {
	var errs []error
	for _, ref := range inventory {
		if err := a.deleteOwned(ctx, m, ref); err != nil {
			errs = append(errs, fmt.Errorf("deleting %s: %w", ref, err))
		}
	}
	return errs
}

// Status recomputes kstatus for every object in the inventory, for reports
// between applies (a Deployment rolling out, a Job completing).
func (a *Applier) Status(ctx context.Context, inventory []Ref) []ResourceResult {
	out := make([]ResourceResult, 0, len(inventory))
	for _, ref := range inventory {
		rr := ResourceResult{Ref: ref}
		mapping, err := a.mapping(schema.GroupVersionKind{Group: ref.Group, Version: ref.Version, Kind: ref.Kind})
		if err != nil {
			rr.Err = err.Error()
			out = append(out, rr)
			continue
		}
		obj, err := a.resource(mapping, ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			rr.Status, rr.Message = status.NotFoundStatus, "deleted outside Fornax"
		case err != nil:
			rr.Err = err.Error()
		default:
			rr.judge(obj)
		}
		out = append(out, rr)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// Resource returns the API resource of an applied object's kind.
func (a *Applier) Resource(ref Ref) (schema.GroupVersionResource, error) {
	m, err := a.mapping(schema.GroupVersionKind{Group: ref.Group, Version: ref.Version, Kind: ref.Kind})
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	return m.Resource, nil
}

// Dynamic returns the applier's dynamic client.
func (a *Applier) Dynamic() dynamic.Interface { return a.dyn }
