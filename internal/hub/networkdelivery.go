package hub

import (
	"context"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link"
)

// FinalizerNetworkDelivery holds a deleted VPC, Subnet or Gateway in a
// hub's cluster until every child that may hold it has confirmed its
// deletion: without it the object would be unknown here, and a child is
// only told that an unknown object is orphaned (which it keeps), never
// that it is deleted.
const FinalizerNetworkDelivery = "network.fornax.io/delivery"

// netKind is one kind of the network API, for the generic parts of its
// controllers.
type netKind struct {
	kind string
	new  func() client.Object
	list func(ctx context.Context, c client.Reader) ([]client.Object, error)
}

var netKindsByName = map[string]netKind{
	KindVPC: {KindVPC, func() client.Object { return &networkv1alpha1.VPC{} }, func(ctx context.Context, c client.Reader) ([]client.Object, error) {
		l := &networkv1alpha1.VPCList{}
		err := c.List(ctx, l)
		return objects(l.Items), err
	}},
	KindSubnet: {KindSubnet, func() client.Object { return &networkv1alpha1.Subnet{} }, func(ctx context.Context, c client.Reader) ([]client.Object, error) {
		l := &networkv1alpha1.SubnetList{}
		err := c.List(ctx, l)
		return objects(l.Items), err
	}},
	KindGateway: {KindGateway, func() client.Object { return &networkv1alpha1.Gateway{} }, func(ctx context.Context, c client.Reader) ([]client.Object, error) {
		l := &networkv1alpha1.GatewayList{}
		err := c.List(ctx, l)
		return objects(l.Items), err
	}},
}

// objects returns pointers to a list's items as client.Objects.
func objects[T any, P interface {
	*T
	client.Object
}](items []T) []client.Object {
	out := make([]client.Object, len(items))
	for i := range items {
		out[i] = P(&items[i])
	}
	return out
}

// setupNetworkDelivery registers one delivery controller per network kind:
// it asks for a delivery pass when what travels of an object changes, puts
// the delivery finalizer on it, and releases a deleted one once no child
// holds it.
func (h *Hub) setupNetworkDelivery(mgr manager.Manager) error {
	events := map[string]chan event.GenericEvent{}
	for _, kind := range networkKinds {
		events[kind] = make(chan event.GenericEvent, 1024)
	}
	// An acknowledged deletion wakes the deleted objects that wait for it.
	go func() {
		for range h.networkChanged {
			for _, kind := range networkKinds {
				objs, err := netKindsByName[kind].list(context.Background(), mgr.GetClient())
				if err != nil {
					continue
				}
				for _, o := range objs {
					if o.GetDeletionTimestamp() != nil {
						events[kind] <- event.GenericEvent{Object: o}
					}
				}
			}
		}
	}()
	for _, kind := range networkKinds {
		k := netKindsByName[kind]
		err := ctrl.NewControllerManagedBy(mgr).
			Named(map[string]string{KindVPC: "vpc-delivery", KindSubnet: "subnet-delivery", KindGateway: "gateway-delivery"}[kind]).
			For(k.new()).
			WatchesRawSource(source.Channel(events[kind], &handler.EnqueueRequestForObject{})).
			Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
				return h.reconcileNetDelivery(ctx, k, req)
			}))
		if err != nil {
			return fmt.Errorf("setting up the delivery of %ss: %w", kind, err)
		}
	}
	return nil
}

// requeueOnConflict turns a write that lost a race (the object changed
// since it was read, most often by another of this hub's reconcilers) into a
// quick retry rather than an error: the next pass reads it again.
func requeueOnConflict(err error) (reconcile.Result, error) {
	if apierrors.IsConflict(err) {
		return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	return reconcile.Result{}, err
}

// notifyNetwork asks for the deleted network objects to be looked at again.
func (h *Hub) notifyNetwork() {
	select {
	case h.networkChanged <- struct{}{}:
	default: // one pending request covers this one
	}
}

// reconcileNetDelivery is the delivery reconcile of one network object.
func (h *Hub) reconcileNetDelivery(ctx context.Context, k netKind, req reconcile.Request) (reconcile.Result, error) {
	key := link.ObjectKey(k.kind, "", req.Name)
	obj := k.new()
	if err := h.client.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			h.deliverIfChanged(key, "")
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	// A new, changed or deleted object travels down (coalesced); a change
	// to what does not travel (conditions) does not.
	h.deliverIfChanged(key, netDeliveryVersion(k.kind, obj))
	if obj.GetDeletionTimestamp() == nil {
		if controllerutil.AddFinalizer(obj, FinalizerNetworkDelivery) {
			if err := h.client.Update(ctx, obj); err != nil {
				return requeueOnConflict(fmt.Errorf("adding the delivery finalizer to %s %s: %w", k.kind, req.Name, err))
			}
		}
		return reconcile.Result{}, nil
	}
	if !controllerutil.ContainsFinalizer(obj, FinalizerNetworkDelivery) {
		return reconcile.Result{}, nil
	}
	holders, offline, err := h.netHolders(ctx, key)
	if err != nil {
		return reconcile.Result{}, err
	}
	if len(holders) > 0 {
		h.log.Debug("a deleted network object waits for children to confirm", "kind", k.kind, "name", req.Name, "children", holders)
		if offline {
			return reconcile.Result{RequeueAfter: 30 * time.Second}, nil // a reconnect also wakes it
		}
		return reconcile.Result{RequeueAfter: 2 * time.Second}, nil // an acknowledgement also wakes it
	}
	controllerutil.RemoveFinalizer(obj, FinalizerNetworkDelivery)
	if err := h.client.Update(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return requeueOnConflict(fmt.Errorf("releasing %s %s: %w", k.kind, req.Name, err))
	}
	h.log.Info("network object deleted below", "kind", k.kind, "name", req.Name)
	return reconcile.Result{}, nil
}

// netHolders returns the children that may still hold a deleted network
// object: a connected child until it has acknowledged the deletion (or
// while it has not yet said what it holds); a disconnected one if the
// delivery rule, with the object still counted, gives it the object.
func (h *Hub) netHolders(ctx context.Context, key string) (holders []string, offline bool, err error) {
	w, err := h.netWorld(ctx)
	if err != nil {
		return nil, false, err
	}
	plan := planNetwork(w)
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
		s := c.session
		if s == nil {
			continue
		}
		digest, sent := s.sent[key]
		_, unacked := s.deleting[key]
		if sent && digest != orphanNotice || unacked || s.haveDigests != nil || s.haveWanted != nil {
			add(name, false)
		}
	}
	for child, objs := range plan {
		if _, ok := objs[key]; !ok {
			continue
		}
		if c := h.children[child]; c == nil || c.session == nil {
			add(child, true)
		}
	}
	slices.Sort(holders)
	return holders, offline, nil
}
