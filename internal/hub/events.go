package hub

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
)

// kubeEvent is one Kubernetes Event the hub records on an object.
type kubeEvent struct {
	typ, reason, note string
}

// conditionEvents returns the Events a change of conditions deserves: a
// condition that turned True (Normal, named after the condition) or stopped
// being True (Warning, the new reason). Unchanged conditions say nothing, so
// an idle tree records no Events.
func conditionEvents(before, after []metav1.Condition, types ...string) []kubeEvent {
	var out []kubeEvent
	for _, t := range types {
		a := meta.FindStatusCondition(after, t)
		if a == nil {
			continue
		}
		b := meta.FindStatusCondition(before, t)
		switch {
		case a.Status == metav1.ConditionTrue && (b == nil || b.Status != metav1.ConditionTrue):
			out = append(out, kubeEvent{corev1.EventTypeNormal, t, a.Message})
		case a.Status != metav1.ConditionTrue && b != nil && b.Status == metav1.ConditionTrue:
			out = append(out, kubeEvent{corev1.EventTypeWarning, a.Reason, fmt.Sprintf("%s is %s: %s", t, a.Status, a.Message)})
		}
	}
	return out
}

// orphanEvents says when a cluster starts holding orphaned missions.
func orphanEvents(before, after *edgev1alpha1.EdgeClusterStatus) []kubeEvent {
	if len(after.OrphanedMissions) > len(before.OrphanedMissions) {
		o := after.OrphanedMissions[len(after.OrphanedMissions)-1]
		return []kubeEvent{{corev1.EventTypeWarning, "MissionsOrphaned", fmt.Sprintf(
			"%d missions no parent knows any more (e.g. %s/%s), kept running until their grace ends (%s) unless created again",
			len(after.OrphanedMissions), o.Namespace, o.Name, o.DeleteAfter.UTC().Format("2006-01-02T15:04:05Z"))}}
	}
	return nil
}

// record sends events about obj, if the hub has a recorder.
func (h *Hub) record(obj runtime.Object, evs []kubeEvent) {
	if h.opts.Events == nil {
		return
	}
	for _, e := range evs {
		h.opts.Events.Eventf(obj, nil, e.typ, e.reason, e.reason, "%s", e.note)
	}
}
