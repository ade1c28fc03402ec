package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// The network API travels down the tree like missions: the parent sends the
// VPCs, Subnets and Gateways this cluster's subtree needs, and the agent
// keeps them in this cluster's API server, marked as from the parent (the
// same label and annotations as missions), where the gateway, fornax-cni
// and, in a middle cluster, the hub's relay read them. Unlike a mission, a
// network object the parent does not know any more is kept: routes to a
// remote subnet are cheap, and losing them on a parent's state loss would
// cut traffic that does not even pass through the parent.

// The kinds of the network API as they travel (the hub's names).
const (
	kindVPC     = "VPC"
	kindSubnet  = "Subnet"
	kindGateway = "Gateway"
)

// finalizerNetworkDelivery is the hub's delivery finalizer (hub.FinalizerNetworkDelivery):
// in a middle cluster the agent stores the parent's network objects with it,
// so that a deletion reaches the children below even when it comes at once.
const finalizerNetworkDelivery = "network.fornax.io/delivery"

// isNetworkKind tells the kinds this file stores.
func isNetworkKind(kind string) bool {
	return kind == kindVPC || kind == kindSubnet || kind == kindGateway
}

// newNetworkObject returns an empty object of a network kind.
func newNetworkObject(kind string) client.Object {
	switch kind {
	case kindVPC:
		return &networkv1alpha1.VPC{}
	case kindSubnet:
		return &networkv1alpha1.Subnet{}
	default:
		return &networkv1alpha1.Gateway{}
	}
}

// haveNetwork lists the parent's network objects this cluster holds, for
// Hello. Objects being deleted here are left out: the parent sends them
// again if it still wants them here.
func (a *Agent) haveNetwork(ctx context.Context) ([]*linkpb.ObjectVersion, error) {
	fromParent := client.MatchingLabels{labelFromParent: "true"}
	var objs []client.Object
	vpcs := &networkv1alpha1.VPCList{}
	if err := a.client.List(ctx, vpcs, fromParent); err != nil {
		return nil, fmt.Errorf("listing the VPCs held from the parent: %w", err)
	}
	for i := range vpcs.Items {
		objs = append(objs, &vpcs.Items[i])
	}
	subnets := &networkv1alpha1.SubnetList{}
	if err := a.client.List(ctx, subnets, fromParent); err != nil {
		return nil, fmt.Errorf("listing the Subnets held from the parent: %w", err)
	}
	for i := range subnets.Items {
		objs = append(objs, &subnets.Items[i])
	}
	gateways := &networkv1alpha1.GatewayList{}
	if err := a.client.List(ctx, gateways, fromParent); err != nil {
		return nil, fmt.Errorf("listing the Gateways held from the parent: %w", err)
	}
	for i := range gateways.Items {
		objs = append(objs, &gateways.Items[i])
	}
	out := make([]*linkpb.ObjectVersion, 0, len(objs))
	for _, o := range objs {
		if o.GetDeletionTimestamp() != nil {
			continue
		}
		gen, _ := strconv.ParseInt(o.GetAnnotations()[annotationSourceGeneration], 10, 64)
		out = append(out, &linkpb.ObjectVersion{Kind: kindOf(o), Name: o.GetName(), Generation: gen, Digest: o.GetAnnotations()[annotationDigest]})
	}
	return out, nil
}

func kindOf(o client.Object) string {
	switch o.(type) {
	case *networkv1alpha1.VPC:
		return kindVPC
	case *networkv1alpha1.Subnet:
		return kindSubnet
	default:
		return kindGateway
	}
}

// deferredObjects holds network objects the parent sent while an object of
// the same kind and name was still being deleted here (a middle cluster's
// hub holds a deleted object until its children confirm): stored once the
// old one is gone.
type deferredObjects struct {
	mu   sync.Mutex
	objs map[string]*linkpb.Object // by link.ObjectKey
}

func (d *deferredObjects) put(key string, o *linkpb.Object) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.objs == nil {
		d.objs = map[string]*linkpb.Object{}
	}
	if o == nil {
		delete(d.objs, key)
		return
	}
	d.objs[key] = o
}

func (d *deferredObjects) take() []*linkpb.Object {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*linkpb.Object, 0, len(d.objs))
	for _, o := range d.objs {
		out = append(out, o)
	}
	clear(d.objs)
	return out
}

// storeNetwork stores one network object from the parent (or deletes it).
// It never touches an object of that name this cluster made itself (its own
// Gateway above all).
func (a *Agent) storeNetwork(ctx context.Context, o *linkpb.Object) error {
	v := o.GetVersion()
	kind, name := v.GetKind(), v.GetName()
	key := link.HaveKey(v)
	a.deferred.put(key, nil) // the latest word from the parent replaces a deferred one
	if o.GetOrphaned() {
		a.log.Warn("the parent does not know a network object this cluster holds from it (did it lose its state?): kept",
			"kind", kind, "name", name)
		return nil
	}
	existing := newNetworkObject(kind)
	err := a.client.Get(ctx, client.ObjectKey{Name: name}, existing)
	switch {
	case apierrors.IsNotFound(err):
		existing = nil
	case err != nil:
		return fmt.Errorf("reading %s %s: %w", kind, name, err)
	}
	if existing != nil && existing.GetLabels()[labelFromParent] != "true" {
		if !o.GetDeleted() {
			a.log.Warn("the parent sent a network object with the name of a local one; not stored", "kind", kind, "name", name)
		}
		return nil
	}
	if o.GetDeleted() {
		if existing == nil || existing.GetDeletionTimestamp() != nil {
			return nil
		}
		if err := a.client.Delete(ctx, existing); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting %s %s: %w", kind, name, err)
		}
		a.log.Info("network object deleted by the parent", "kind", kind, "name", name)
		return nil
	}
	if kind == kindGateway && name == a.Cluster() {
		a.log.Warn("the parent sent this cluster's own Gateway; not stored (this cluster's gateway writes it)")
		return nil
	}
	if existing != nil && existing.GetDeletionTimestamp() != nil {
		a.deferred.put(key, o)
		a.log.Info("network object still being deleted here; stored once it is gone", "kind", kind, "name", name)
		return nil
	}
	return a.applyNetwork(ctx, o)
}

// applyNetwork writes a network object from the parent with server-side
// apply: the object, then its status (where a VPC's VNI lives).
func (a *Agent) applyNetwork(ctx context.Context, o *linkpb.Object) error {
	v := o.GetVersion()
	kind, name := v.GetKind(), v.GetName()
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(o.GetPayload(), &u.Object); err != nil {
		return fmt.Errorf("decoding %s %s from the parent: %w", kind, name, err)
	}
	if u.GetKind() != kind || u.GetName() != name || u.GetAPIVersion() != networkv1alpha1.GroupVersion.String() {
		return fmt.Errorf("the parent sent %s %s with a payload for %s %s %s", kind, name, u.GetAPIVersion(), u.GetKind(), u.GetName())
	}
	status, hasStatus, _ := unstructured.NestedMap(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
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
	if a.opts.Relay {
		u.SetFinalizers([]string{finalizerNetworkDelivery})
	}
	if err := a.client.Patch(ctx, u, client.Apply, client.FieldOwner(fieldManagerAgent), client.ForceOwnership); err != nil { //nolint:staticcheck // client.Apply with unstructured needs no apply configurations
		return fmt.Errorf("storing %s %s: %w", kind, name, err)
	}
	if !hasStatus {
		return nil
	}
	st := &unstructured.Unstructured{Object: map[string]any{"apiVersion": u.GetAPIVersion(), "kind": kind,
		"metadata": map[string]any{"name": name}, "status": status}}
	if err := a.client.Status().Patch(ctx, st, client.Apply, client.FieldOwner(fieldManagerAgent), client.ForceOwnership); err != nil { //nolint:staticcheck // as above
		return fmt.Errorf("storing the status of %s %s: %w", kind, name, err)
	}
	return nil
}

// retryDeferred stores the deferred network objects whose predecessors are
// gone; a manager runnable.
func (a *Agent) retryDeferred(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, o := range a.deferred.take() {
			if err := a.storeNetwork(ctx, o); err != nil {
				a.log.Warn("cannot store a deferred network object; retrying", "object", link.HaveKey(o.GetVersion()), "error", err.Error())
				a.deferred.put(link.HaveKey(o.GetVersion()), o)
			}
		}
	}
}

// setupNetwork registers what the agent does for the network API: a report
// when this cluster's own Gateway changes, and the deferred stores.
func (a *Agent) setupNetwork(mgr ctrl.Manager) error {
	if err := mgr.Add(manager.RunnableFunc(a.retryDeferred)); err != nil {
		return err
	}
	own := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == a.Cluster() })
	return ctrl.NewControllerManagedBy(mgr).
		Named("gateway-report").
		For(&networkv1alpha1.Gateway{}, builder.WithPredicates(own)).
		Complete(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
			a.markDirty()
			return reconcile.Result{}, nil
		}))
}

// gatewayState is what this cluster reports of its own gateway: the facts
// of the Gateway named after it, which its gateway writes; nil when it runs
// none.
func (a *Agent) gatewayState(ctx context.Context) *linkpb.GatewayState {
	if a.client == nil {
		return nil
	}
	g := &networkv1alpha1.Gateway{}
	if err := a.client.Get(ctx, client.ObjectKey{Name: a.Cluster()}, g); err != nil {
		if !apierrors.IsNotFound(err) {
			a.log.Warn("cannot read this cluster's Gateway for the report", "error", err.Error())
		}
		return nil
	}
	return gatewayStateOf(g)
}

// gatewayStateOf converts a Gateway object to its reported state. It is pure.
func gatewayStateOf(g *networkv1alpha1.Gateway) *linkpb.GatewayState {
	if g.DeletionTimestamp != nil || g.Spec.Endpoint == "" {
		return nil
	}
	s := &linkpb.GatewayState{
		Endpoint: g.Spec.Endpoint, PublicKey: g.Spec.PublicKey,
		Vpcs: g.Status.VPCs, Subnets: g.Status.Subnets, Generation: g.Status.Generation,
	}
	if c := meta.FindStatusCondition(g.Status.Conditions, networkv1alpha1.ConditionReady); c != nil {
		s.Ready = c.Status == "True"
		s.Message = c.Message
		if len(s.Message) > link.MaxMessageBytes {
			s.Message = strings.ToValidUTF8(s.Message[:link.MaxMessageBytes], "")
		}
	}
	return s
}
