// Package gateway is fornaxd's gateway role: it programs this cluster's
// share of the inter-cluster network (package netplane) from the VPCs,
// Subnets and Gateways in the cluster's own API server, and writes the
// cluster's own Gateway object, the facts the other gateways of its VPCs
// need (its endpoint, VPCs and subnets), which the agent reports upward.
//
// It reads only local objects: while the link to the parent is down it keeps
// the data plane it last programmed, and it catches up as soon as new objects
// arrive. Reconciliation is level-triggered: on every change of those
// objects, and periodically to repair drift. Stopping fornaxd leaves the data
// plane in place, so pods keep their network across a restart.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/netplane"
)

// DefaultResync is how often the data plane is checked and repaired when
// nothing changes.
const DefaultResync = 30 * time.Second

// retryAfterFailure is how soon a failed pass is tried again.
const retryAfterFailure = 5 * time.Second

// Options configure the gateway role.
type Options struct {
	// Cluster is this cluster's name in the tree; its Gateway is named after it.
	Cluster string
	// Endpoint is the underlay IPv4 address of this gateway: configured on
	// a link of the namespace fornaxd runs in (the node's, with hostNetwork).
	Endpoint netip.Addr
	// Prefix names the router namespaces; "" is netplane.DefaultPrefix.
	Prefix string
	// Resync is the period of the repair pass; default DefaultResync.
	Resync time.Duration
	// ParentConnected tells whether the link to the parent is up; nil for
	// the root.
	ParentConnected func() bool
	Logger          *slog.Logger
}

// Dataplane applies a Spec: a netplane.Reconciler, or a fake in tests.
type Dataplane interface {
	Apply(ctx context.Context, s netplane.Spec) (netplane.Result, error)
}

// Gateway is the gateway role of fornaxd.
type Gateway struct {
	opts   Options
	dp     Dataplane
	client client.Client
	log    *slog.Logger
	nudge  chan event.GenericEvent
}

// New checks the options and prepares the gateway; dp nil programs the
// namespace fornaxd runs in (netplane.NewForCurrent). Close releases it.
func New(opts Options, dp Dataplane) (*Gateway, error) {
	if opts.Cluster == "" {
		return nil, errors.New("the gateway needs this cluster's name")
	}
	if !opts.Endpoint.Is4() || !opts.Endpoint.IsGlobalUnicast() {
		return nil, fmt.Errorf("--gateway-endpoint %v is not a unicast IPv4 address: give the underlay address of this cluster's gateway node", opts.Endpoint)
	}
	if err := netplane.Validate(netplane.Spec{Prefix: opts.Prefix, Underlay: opts.Endpoint}); err != nil {
		return nil, fmt.Errorf("gateway options: %w", err)
	}
	if opts.Resync <= 0 {
		opts.Resync = DefaultResync
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if dp == nil {
		r, err := netplane.NewForCurrent()
		if err != nil {
			return nil, err
		}
		dp = r
	}
	return &Gateway{opts: opts, dp: dp, log: opts.Logger.With("role", "gateway", "cluster", opts.Cluster),
		nudge: make(chan event.GenericEvent, 1)}, nil
}

// Close releases the data plane's handle; the data plane itself stays.
func (g *Gateway) Close() error {
	if c, ok := g.dp.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// Nudge asks for a pass now (the link to the parent came up or went down).
func (g *Gateway) Nudge() {
	ev := &networkv1alpha1.Gateway{}
	ev.Name = g.opts.Cluster
	select {
	case g.nudge <- event.GenericEvent{Object: ev}:
	default: // one is pending
	}
}

// SetupWithManager registers the gateway's reconciler: one key (this
// cluster), woken by any VPC, Subnet or Gateway change.
func (g *Gateway) SetupWithManager(mgr manager.Manager) error {
	g.client = mgr.GetClient()
	me := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: g.opts.Cluster}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("gateway").
		Watches(&networkv1alpha1.VPC{}, me).
		Watches(&networkv1alpha1.Subnet{}, me).
		Watches(&networkv1alpha1.Gateway{}, me).
		WatchesRawSource(source.Channel(g.nudge, me)).
		Complete(reconcile.Func(g.reconcile))
}

// reconcile runs one pass: plan from the local objects, apply, and write
// this cluster's Gateway.
func (g *Gateway) reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	in, err := g.input(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	plan := Desired(in)
	t0 := time.Now()
	res, applyErr := g.dp.Apply(ctx, plan.Spec)
	if res.Changed() {
		g.log.Info("data plane changed", "changes", len(res.Changes), "took", time.Since(t0).String(), "details", res.Changes)
	}
	if applyErr != nil {
		g.log.Warn("cannot program the data plane; retrying", "error", applyErr.Error())
	}
	if err := g.writeGateway(ctx, plan, applyErr); err != nil {
		if apierrors.IsConflict(err) {
			// Changed since read (the hub of a middle cluster adds its
			// finalizer): read again and retry soon.
			return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
		}
		return reconcile.Result{}, err
	}
	if applyErr != nil {
		return reconcile.Result{RequeueAfter: retryAfterFailure}, nil
	}
	return reconcile.Result{RequeueAfter: g.opts.Resync}, nil
}

// input reads the local network objects (read-only, from the cache).
func (g *Gateway) input(ctx context.Context) (Input, error) {
	in := Input{Cluster: g.opts.Cluster, Prefix: g.opts.Prefix, Endpoint: g.opts.Endpoint}
	vpcs := &networkv1alpha1.VPCList{}
	if err := g.client.List(ctx, vpcs, client.UnsafeDisableDeepCopy); err != nil {
		return in, fmt.Errorf("listing VPCs: %w", err)
	}
	subnets := &networkv1alpha1.SubnetList{}
	if err := g.client.List(ctx, subnets, client.UnsafeDisableDeepCopy); err != nil {
		return in, fmt.Errorf("listing Subnets: %w", err)
	}
	gateways := &networkv1alpha1.GatewayList{}
	if err := g.client.List(ctx, gateways, client.UnsafeDisableDeepCopy); err != nil {
		return in, fmt.Errorf("listing Gateways: %w", err)
	}
	for i := range vpcs.Items {
		in.VPCs = append(in.VPCs, &vpcs.Items[i])
	}
	for i := range subnets.Items {
		in.Subnets = append(in.Subnets, &subnets.Items[i])
	}
	for i := range gateways.Items {
		in.Gateways = append(in.Gateways, &gateways.Items[i])
	}
	return in, nil
}

// writeGateway makes this cluster's Gateway say what the pass programmed,
// writing only what changed.
func (g *Gateway) writeGateway(ctx context.Context, plan Plan, applyErr error) error {
	spec := networkv1alpha1.GatewaySpec{Cluster: g.opts.Cluster, Endpoint: g.opts.Endpoint.String()}
	gw := &networkv1alpha1.Gateway{}
	err := g.client.Get(ctx, client.ObjectKey{Name: g.opts.Cluster}, gw)
	var previousSpec networkv1alpha1.GatewaySpec // none yet: the generation starts
	switch {
	case apierrors.IsNotFound(err):
		gw = &networkv1alpha1.Gateway{Spec: spec}
		gw.Name = g.opts.Cluster
		if err := g.client.Create(ctx, gw); err != nil {
			return fmt.Errorf("creating this cluster's Gateway %s: %w", g.opts.Cluster, err)
		}
		g.log.Info("gateway object created", "endpoint", spec.Endpoint)
	case err != nil:
		return fmt.Errorf("reading this cluster's Gateway %s: %w", g.opts.Cluster, err)
	case gw.DeletionTimestamp != nil:
		return nil // made again once gone
	default:
		previousSpec = gw.Spec
	}
	if gw.Spec != spec {
		gw.Spec = spec
		if err := g.client.Update(ctx, gw); err != nil {
			return fmt.Errorf("updating this cluster's Gateway %s: %w", g.opts.Cluster, err)
		}
	}
	parentUp := g.opts.ParentConnected == nil || g.opts.ParentConnected()
	st := deriveStatus(observation{plan: plan, applyErr: applyErr, parentUp: parentUp,
		previousSpec: previousSpec, previousStatus: gw.Status, spec: spec, now: time.Now()})
	if equality.Semantic.DeepEqual(st, gw.Status) {
		return nil
	}
	gw.Status = st
	if err := g.client.Status().Update(ctx, gw); err != nil {
		return fmt.Errorf("writing the status of this cluster's Gateway %s: %w", g.opts.Cluster, err)
	}
	return nil
}
