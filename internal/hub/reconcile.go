package hub

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
)

// PriorityLink is the work queue priority of a status reconcile for a link
// that went up or down; reports and informer events have 0 (controller-runtime's
// priority queue serves higher first).
const PriorityLink = 10

// SetupWithManager registers the EdgeCluster reconciler: it runs on every
// EdgeCluster event and whenever the link layer reports a change, a link
// going up or down ahead of everything else queued.
func (h *Hub) SetupWithManager(mgr ctrl.Manager) error {
	events := make(chan event.TypedGenericEvent[*edgev1alpha1.EdgeCluster], 1024)
	linkEvents := make(chan event.TypedGenericEvent[*edgev1alpha1.EdgeCluster], 1024)
	go func() {
		send := func(to chan<- event.TypedGenericEvent[*edgev1alpha1.EdgeCluster], names []string) {
			for _, name := range names {
				ec := &edgev1alpha1.EdgeCluster{}
				ec.Name = name
				to <- event.TypedGenericEvent[*edgev1alpha1.EdgeCluster]{Object: ec}
			}
		}
		for range h.changed {
			link, other := h.takeDirty()
			send(linkEvents, link)
			send(events, other)
		}
	}()
	if err := h.setupMissions(mgr); err != nil {
		return err
	}
	if err := h.setupNetworkDelivery(mgr); err != nil {
		return err
	}
	if err := h.setupGatewayFacts(mgr); err != nil {
		return err
	}
	if err := h.setupNetworkStatus(mgr); err != nil {
		return err
	}
	// Descendants are listed by the child they are reported through on every
	// reconcile of that child: an index, not a scan of every EdgeCluster.
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &edgev1alpha1.EdgeCluster{}, indexVia, func(o client.Object) []string {
		if via := o.GetLabels()[LabelVia]; via != "" {
			return []string{via}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing EdgeClusters by %s: %w", LabelVia, err)
	}
	h.viaIndexed = true
	return ctrl.NewControllerManagedBy(mgr).
		Named("edgecluster-status").
		// Status writes are independent per cluster; a few in flight keep a
		// crowd of reconnecting clusters from queueing behind one another.
		// The priority queue (controller-runtime's default, stated here as
		// enqueueWithPriority relies on it) puts link changes first.
		WithOptions(controller.Options{MaxConcurrentReconciles: 4, UsePriorityQueue: ptr.To(true)}).
		For(&edgev1alpha1.EdgeCluster{}).
		WatchesRawSource(source.Channel(events, &handler.TypedEnqueueRequestForObject[*edgev1alpha1.EdgeCluster]{})).
		WatchesRawSource(source.Channel(linkEvents, enqueueWithPriority(PriorityLink))).
		Complete(reconcile.Func(h.reconcile))
}

// reconcile makes one EdgeCluster's status and built-in labels match what the
// hub knows, writing only what differs.
func (h *Hub) reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	name := req.Name
	ec := &edgev1alpha1.EdgeCluster{}
	if err := h.client.Get(ctx, types.NamespacedName{Name: name}, ec); err != nil {
		if apierrors.IsNotFound(err) {
			// Removed (fornaxctl remove cluster): end its stream, forget it.
			h.disconnect(name)
			h.mu.Lock()
			_, wasChild := h.children[name]
			delete(h.children, name)
			delete(h.childLabels, name)
			delete(h.placed, name)
			h.mu.Unlock()
			h.requestSync() // what was sent for it is no longer desired
			if wasChild {
				// Its descendants go with it.
				return reconcile.Result{}, h.setDescendants(ctx, name, nil)
			}
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	h.notifyMissions() // its labels or state may change what missions select and show
	v := h.snapshot(name, time.Now())
	via := ec.Labels[LabelVia]
	if via != "" && !v.known {
		// A descendant no child reports any more (its child was removed).
		if err := h.syncDescendants(ctx, via); err != nil {
			return reconcile.Result{}, err
		}
		return reconcile.Result{}, nil
	}
	if via == "" {
		if err := h.syncDescendants(ctx, name); err != nil {
			return reconcile.Result{}, err
		}
	}
	v.generation = ec.Generation
	v.previousStatus = ec.Status
	desired, requeue := deriveStatus(v)

	wantLabels, inherited := h.wantLabels(ctx, ec, v, desired.Distro)
	if !maps.Equal(wantLabels, ec.Labels) || inherited != ec.Annotations[AnnotationInherited] {
		patch := client.MergeFrom(ec.DeepCopy())
		ec.Labels = wantLabels
		if ec.Annotations == nil {
			ec.Annotations = map[string]string{}
		}
		ec.Annotations[AnnotationInherited] = inherited
		if inherited == "" {
			delete(ec.Annotations, AnnotationInherited)
		}
		if err := h.client.Patch(ctx, ec, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("updating labels of EdgeCluster %s: %w", name, err)
		}
		h.notifyBelow(name) // descendants inherit from it
	}
	if via == "" {
		h.mu.Lock()
		old := h.childLabels[name]
		h.childLabels[name] = ownLabels(ec)
		h.mu.Unlock()
		if !maps.Equal(old, h.childLabels[name]) && h.opts.OnSubtreeChange != nil {
			h.opts.OnSubtreeChange()
		}
	}
	if !equality.Semantic.DeepEqual(desired, ec.Status) {
		patch := client.MergeFrom(ec.DeepCopy())
		before := ec.Status
		ec.Status = desired
		if err := h.client.Status().Patch(ctx, ec, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("updating status of EdgeCluster %s: %w", name, err)
		}
		statusWrites.Inc()
		h.record(ec, append(conditionEvents(before.Conditions, desired.Conditions, edgev1alpha1.EdgeClusterConnected, edgev1alpha1.EdgeClusterReady),
			orphanEvents(&before, &desired)...))
	}
	h.placementChanged(name, placementFacts(ec.Labels, ec.Spec.Unschedulable, desired.Path))
	return reconcile.Result{RequeueAfter: requeue}, nil
}

// indexVia indexes EdgeClusters by the child they are reported through.
const indexVia = "fornax.via"

// placementFacts are what placement reads of a cluster: a change to them
// may change what missions select.
func placementFacts(labels map[string]string, unschedulable bool, path string) string {
	keys := slices.Sorted(maps.Keys(labels))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + labels[k] + ",")
	}
	return fmt.Sprintf("%s|%t|%s", b.String(), unschedulable, path)
}

// placementChanged asks for a delivery pass when a cluster's placement facts
// differ from those last seen: status-only changes (heartbeats, conditions,
// reconnects) need none, which keeps a pass over ten thousand clusters from
// following every one of their status writes.
func (h *Hub) placementChanged(name, facts string) {
	h.mu.Lock()
	old, seen := h.placed[name]
	h.placed[name] = facts
	h.mu.Unlock()
	if !seen || old != facts {
		h.requestSync()
	}
}

// enqueueWithPriority enqueues the object of a generic event at priority when
// the controller's queue is controller-runtime's priority queue (the
// default), and plainly otherwise.
func enqueueWithPriority(priority int) handler.TypedEventHandler[*edgev1alpha1.EdgeCluster, reconcile.Request] {
	return handler.TypedFuncs[*edgev1alpha1.EdgeCluster, reconcile.Request]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[*edgev1alpha1.EdgeCluster], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			req := reconcile.Request{NamespacedName: types.NamespacedName{Name: e.Object.GetName()}}
			if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
				pq.AddWithOpts(priorityqueue.AddOpts{Priority: &priority}, req)
				return
			}
			q.Add(req)
		},
	}
}
