package agent

import (
	"context"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/event"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/apply"
)

// objectWatch watches the objects missions applied, one informer per kind
// missions use, limited by label to Fornax's own objects. Any change to one
// (an edit at the edge, a rollout's progress, a deletion) wakes the mission
// that owns it: drift is reverted at once and readiness is reported when it
// changes, not on a timer.
type objectWatch struct {
	factory dynamicinformer.DynamicSharedInformerFactory
	events  chan event.GenericEvent

	mu      sync.Mutex
	ctx     context.Context // set once the manager runs the watch
	watched map[schema.GroupVersionResource]bool
}

func newObjectWatch(dyn dynamic.Interface) *objectWatch {
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.LabelSelector = apply.LabelMission })
	return &objectWatch{factory: factory, events: make(chan event.GenericEvent, 1024), watched: map[schema.GroupVersionResource]bool{}}
}

// Start is a manager runnable: informers added before it are started now,
// later ones when added.
func (w *objectWatch) Start(ctx context.Context) error {
	w.mu.Lock()
	w.ctx = ctx
	w.factory.Start(ctx.Done())
	w.mu.Unlock()
	<-ctx.Done()
	w.factory.Shutdown()
	return nil
}

// ensure watches a resource from now on (idempotent).
func (w *objectWatch) ensure(gvr schema.GroupVersionResource) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watched[gvr] {
		return
	}
	w.watched[gvr] = true
	inf := w.factory.ForResource(gvr).Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.wake,
		UpdateFunc: func(_, obj any) { w.wake(obj) },
		DeleteFunc: w.wake,
	})
	if w.ctx != nil {
		w.factory.Start(w.ctx.Done())
	}
}

// synced tells whether the watch of a resource has listed it.
func (w *objectWatch) synced(gvr schema.GroupVersionResource) bool {
	w.mu.Lock()
	watched := w.watched[gvr]
	w.mu.Unlock()
	return watched && w.factory.ForResource(gvr).Informer().HasSynced()
}

// get returns an object as the watch of its resource last saw it; ok is
// false when the resource is not watched or its watch has not synced yet.
func (w *objectWatch) get(gvr schema.GroupVersionResource, namespace, name string) (*unstructured.Unstructured, bool) {
	if !w.synced(gvr) {
		return nil, false
	}
	inf := w.factory.ForResource(gvr).Informer()
	key := name
	if namespace != "" {
		key = namespace + "/" + name
	}
	obj, ok, err := inf.GetIndexer().GetByKey(key)
	if err != nil || !ok {
		return nil, false
	}
	u, ok := obj.(*unstructured.Unstructured)
	return u, ok
}

// wake queues the mission that owns obj.
func (w *objectWatch) wake(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	ns, name, ok := strings.Cut(u.GetAnnotations()[apply.AnnotationMission], "/")
	if !ok {
		return
	}
	m := &edgev1alpha1.Mission{}
	m.Namespace, m.Name = ns, name
	w.events <- event.GenericEvent{Object: m}
}
