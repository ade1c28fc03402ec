package fornaxctl

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
)

func TestMissionProgress(t *testing.T) {
	m := &edgev1alpha1.Mission{}
	m.Generation = 2
	m.Status.ObservedGeneration = 1
	if got, want := missionProgress(m), "generation 2: waiting for the hub to place it"; got != want || missionReady(m) {
		t.Errorf("not yet observed: %q (ready %t), want %q", got, missionReady(m), want)
	}
	m.Status.ObservedGeneration = 2
	m.Status.Summary = edgev1alpha1.MissionSummaryCounts{Targeted: 4, Applied: 3, Ready: 2, Unknown: 1}
	meta.SetStatusCondition(&m.Status.Conditions, metav1.Condition{Type: edgev1alpha1.MissionReady, Status: metav1.ConditionUnknown,
		Reason: "ClustersUnreachable", Message: "1 of 4 clusters unreachable", ObservedGeneration: 2})
	if got, want := missionProgress(m), "generation 2: ready in 2 of 4 clusters (applied 3, failed 0, unknown 1): 1 of 4 clusters unreachable"; got != want || missionReady(m) {
		t.Errorf("progressing: %q (ready %t), want %q", got, missionReady(m), want)
	}
	m.Status.Summary = edgev1alpha1.MissionSummaryCounts{Targeted: 4, Applied: 4, Ready: 4}
	meta.SetStatusCondition(&m.Status.Conditions, metav1.Condition{Type: edgev1alpha1.MissionReady, Status: metav1.ConditionTrue,
		Reason: "Ready", Message: "ready in all 4 clusters", ObservedGeneration: 2})
	if got, want := missionProgress(m), "generation 2: ready in 4 of 4 clusters (applied 4, failed 0, unknown 0)"; got != want || !missionReady(m) {
		t.Errorf("ready: %q (ready %t), want %q", got, missionReady(m), want)
	}
	// Ready for an older generation is not Ready.
	m.Generation = 3
	if missionReady(m) {
		t.Error("Ready for generation 2 counted as Ready for generation 3")
	}
}
