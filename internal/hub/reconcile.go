package hub

import (
	"context"
	"fmt"
	"maps"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
)

// SetupWithManager registers the EdgeCluster reconciler: it runs on every
// EdgeCluster event and whenever the link layer reports a change.
func (h *Hub) SetupWithManager(mgr ctrl.Manager) error {
	events := make(chan event.TypedGenericEvent[*edgev1alpha1.EdgeCluster], 1024)
	go func() {
		for range h.changed {
			for _, name := range h.takeDirty() {
				ec := &edgev1alpha1.EdgeCluster{}
				ec.Name = name
				events <- event.TypedGenericEvent[*edgev1alpha1.EdgeCluster]{Object: ec}
			}
		}
	}()
	if err := h.setupMissions(mgr); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("edgecluster-status").
		For(&edgev1alpha1.EdgeCluster{}).
		WatchesRawSource(source.Channel(events, &handler.TypedEnqueueRequestForObject[*edgev1alpha1.EdgeCluster]{})).
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
			h.mu.Unlock()
			if wasChild {
				// Its descendants go with it.
				return reconcile.Result{}, h.syncDescendants(ctx, name)
			}
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	h.notifyMissions() // its labels or state may change what missions select and show
	h.requestSync()
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
	return reconcile.Result{RequeueAfter: requeue}, nil
}
