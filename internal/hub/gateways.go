package hub

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// A hub materialises the Gateway of every cluster of its subtree that runs
// one, from what the cluster reports (ClusterState.gateway), as a Gateway
// object named after the cluster. These are what the other clusters of the
// cluster's VPCs receive, and what the root's VPC and Subnet status read.
// The local cluster's own Gateway is its gateway's to write, never the hub's.

// LabelGatewayVia marks a Gateway the hub materialised from reports, with
// the child its cluster is reached through: the hub creates, updates and
// deletes only those.
const LabelGatewayVia = "network.fornax.io/reported-via"

// setupGatewayFacts registers the reconciler that materialises reported
// Gateways: it runs when a cluster's reported state changes, when a Gateway
// or an EdgeCluster changes, and for every Gateway at start.
func (h *Hub) setupGatewayFacts(mgr manager.Manager) error {
	events := make(chan event.GenericEvent, 1024)
	go func() {
		for range h.gatewaysChanged {
			for _, name := range h.takeGatewayDirty() {
				g := &networkv1alpha1.Gateway{}
				g.Name = name
				events <- event.GenericEvent{Object: g}
			}
		}
	}()
	sameName := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: o.GetName()}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("gateway-facts").
		For(&networkv1alpha1.Gateway{}).
		// A cluster joining or leaving the subtree; its status changes do not matter here.
		Watches(&edgev1alpha1.EdgeCluster{}, sameName, builder.WithPredicates(predicate.Funcs{
			UpdateFunc: func(event.UpdateEvent) bool { return false },
		})).
		WatchesRawSource(source.Channel(events, &handler.EnqueueRequestForObject{})).
		Complete(reconcile.Func(h.reconcileGatewayFacts))
}

// notifyGateways asks for the Gateways of some clusters to be materialised
// again.
func (h *Hub) notifyGateways(names ...string) {
	h.dirtyMu.Lock()
	if h.gwDirty == nil {
		h.gwDirty = map[string]struct{}{}
	}
	for _, n := range names {
		h.gwDirty[n] = struct{}{}
	}
	h.dirtyMu.Unlock()
	select {
	case h.gatewaysChanged <- struct{}{}:
	default: // a signal is pending: it covers these names
	}
}

func (h *Hub) takeGatewayDirty() []string {
	h.dirtyMu.Lock()
	defer h.dirtyMu.Unlock()
	out := make([]string, 0, len(h.gwDirty))
	for n := range h.gwDirty {
		out = append(out, n)
	}
	clear(h.gwDirty)
	return out
}

// reported returns what a cluster of the subtree last reported of its
// gateway through via, the child it is reached through (its EdgeCluster
// says which: another child cannot speak for it). known is false when that
// child has not reported the cluster (since this hub started, or at all),
// or reports it only as out of reach without its facts (a middle cluster
// that restarted reports its stored subtree so).
func (h *Hub) reported(name, via string) (gw *linkpb.GatewayState, known bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.children[via]
	if c == nil {
		return nil, false
	}
	st := c.states[name]
	if st == nil || st.GetGateway() == nil && !st.GetConnected() {
		return nil, false
	}
	return st.GetGateway(), true
}

// reconcileGatewayFacts makes the Gateway of one cluster of the subtree
// match what the cluster reports. A cluster not reported since this hub
// started, or reported out of reach without its facts, keeps its Gateway
// (its gateway keeps its routes, and so do its peers); one that left the
// tree, or says it runs no gateway, loses it.
func (h *Hub) reconcileGatewayFacts(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	name := req.Name
	if name == h.opts.Name {
		return reconcile.Result{}, nil // this cluster's own: its gateway writes it
	}
	gw := &networkv1alpha1.Gateway{}
	err := h.client.Get(ctx, req.NamespacedName, gw)
	switch {
	case apierrors.IsNotFound(err):
		gw = nil
	case err != nil:
		return reconcile.Result{}, err
	}
	ours := gw != nil && gw.Labels[LabelGatewayVia] != ""
	ec := &edgev1alpha1.EdgeCluster{}
	err = h.client.Get(ctx, client.ObjectKey{Name: name}, ec)
	if err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	inTree := err == nil
	via := ec.Labels[LabelVia]
	if via == "" {
		via = name // a child of this cluster
	}
	state, known := h.reported(name, via)
	switch {
	case !inTree || known && state == nil:
		// The cluster left the subtree, or runs no gateway any more.
		if ours && gw.DeletionTimestamp == nil {
			if err := h.client.Delete(ctx, gw); err != nil && !apierrors.IsNotFound(err) {
				return reconcile.Result{}, fmt.Errorf("deleting the Gateway of %s: %w", name, err)
			}
			h.log.Info("gateway gone from the subtree", "cluster", name, "inTree", inTree)
		}
		return reconcile.Result{}, nil
	case !known:
		return reconcile.Result{}, nil // not reported since this hub started: kept as it was
	}
	if gw != nil && !ours && gw.Labels[LabelFromParent] != "true" {
		h.log.Warn("a Gateway named after a cluster of the subtree exists here and was not made by Fornax; not overwritten", "cluster", name)
		return reconcile.Result{}, nil
	}
	if gw != nil && gw.DeletionTimestamp != nil {
		return reconcile.Result{RequeueAfter: 5 * time.Second}, nil // made again once the old one is gone
	}
	want := gatewayFromState(name, via, state, gw, time.Now())
	if gw == nil {
		status := want.Status
		if err := h.client.Create(ctx, want); err != nil {
			return requeueOnConflict(fmt.Errorf("creating the Gateway of %s: %w", name, err))
		}
		want.Status = status
		if err := h.client.Status().Update(ctx, want); err != nil {
			return requeueOnConflict(fmt.Errorf("writing the status of the Gateway of %s: %w", name, err))
		}
		h.log.Info("gateway joined the subtree", "cluster", name, "endpoint", want.Spec.Endpoint)
		return reconcile.Result{}, nil
	}
	if !maps.Equal(gw.Labels, want.Labels) || len(gw.Annotations) > 0 || gw.Spec != want.Spec {
		if gw.Labels[LabelFromParent] == "true" {
			h.log.Info("a gateway the parent sent is in the subtree now: taken over from its reports", "cluster", name)
		}
		gw.Labels, gw.Annotations, gw.Spec = want.Labels, nil, want.Spec
		controllerutil.AddFinalizer(gw, FinalizerNetworkDelivery)
		if err := h.client.Update(ctx, gw); err != nil {
			return requeueOnConflict(fmt.Errorf("updating the Gateway of %s: %w", name, err))
		}
	}
	if !equality.Semantic.DeepEqual(gw.Status, want.Status) {
		gw.Status = want.Status
		if err := h.client.Status().Update(ctx, gw); err != nil {
			return requeueOnConflict(fmt.Errorf("writing the status of the Gateway of %s: %w", name, err))
		}
		statusWrites.Inc()
	}
	return reconcile.Result{}, nil
}

// gatewayFromState is the Gateway object of a cluster that reported state,
// reached through child via; previous (nil if none) keeps the condition's
// transition time while nothing changes. It is pure.
func gatewayFromState(name, via string, s *linkpb.GatewayState, previous *networkv1alpha1.Gateway, now time.Time) *networkv1alpha1.Gateway {
	g := &networkv1alpha1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelGatewayVia: via}, Finalizers: []string{FinalizerNetworkDelivery}},
		Spec:       networkv1alpha1.GatewaySpec{Cluster: name, Endpoint: s.GetEndpoint(), PublicKey: s.GetPublicKey()},
		Status: networkv1alpha1.GatewayStatus{
			VPCs: slices.Clone(s.GetVpcs()), Subnets: slices.Clone(s.GetSubnets()), Generation: s.GetGeneration(),
		},
	}
	if previous != nil {
		g.Status.Conditions = previous.Status.DeepCopy().Conditions
	}
	cond := metav1.Condition{Type: networkv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonProgrammed,
		Message: s.GetMessage(), LastTransitionTime: metav1.NewTime(now.Truncate(time.Second))}
	if !s.GetReady() {
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonNotProgrammed
	}
	if cond.Message == "" {
		cond.Message = "reported by the cluster's gateway"
	}
	meta.SetStatusCondition(&g.Status.Conditions, cond)
	return g
}
