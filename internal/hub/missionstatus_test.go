package hub

import (
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

func TestDeriveMissionStatus(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	m := &edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Generation: 3}}
	state := func(phase string, gen int64) *linkpb.MissionState {
		return &linkpb.MissionState{Namespace: "shop", Name: "web", Generation: gen, Phase: phase,
			Resources: []*linkpb.ResourceState{{ApiVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web", Status: "Current"}}}
	}
	views := map[string]missionView{
		"a": {connected: true, state: state("Ready", 3)},
		"b": {connected: true, state: state("Failed", 3)},
		"c": {connected: false, since: now.Add(-time.Hour), state: state("Ready", 3)},
		"d": {connected: true},
		"e": {connected: true, state: state("Ready", 2)},
	}
	st := deriveMissionStatus(m, []string{"a", "b", "c", "d", "e"}, nil, views, now)
	want := edgev1alpha1.MissionSummaryCounts{Targeted: 5, Applied: 1, Ready: 1, Failed: 1, Unknown: 1}
	if st.Summary != want {
		t.Errorf("summary %+v, want %+v", st.Summary, want)
	}
	order := ""
	for _, c := range st.Clusters {
		order += c.Cluster
	}
	if order != "bcade" {
		t.Errorf("entries in order %q, want failures first, then unknown: bcade", order)
	}
	if st.Clusters[1].Phase != edgev1alpha1.PhaseUnknown || st.Clusters[1].Message != "cluster unreachable; unknown since 2026-11-21T11:00:00Z" {
		t.Errorf("an unreachable cluster: %+v (never a stale Ready)", st.Clusters[1])
	}
	if e := st.Clusters[4]; e.Phase != edgev1alpha1.PhasePending || e.Generation != 2 {
		t.Errorf("an older generation applied: %+v", e)
	}
	if c := meta.FindStatusCondition(st.Conditions, edgev1alpha1.MissionReady); c == nil || c.Status != metav1.ConditionFalse || c.Reason != "Failed" {
		t.Errorf("Ready condition %+v", c)
	}

	// Nothing changed: the same status, times included, so nothing is written.
	m.Status = st
	if again := deriveMissionStatus(m, []string{"a", "b", "c", "d", "e"}, nil, views, now.Add(time.Minute)); !equality.Semantic.DeepEqual(again, st) {
		t.Error("an unchanged mission's status changed with time")
	}

	// Bounded: thousands of targets keep at most MaxClusterStatuses entries, the summary complete.
	many := make([]string, 0, 3000)
	manyViews := map[string]missionView{}
	for i := range 3000 {
		n := "c" + string(rune('a'+i%26)) + time.Duration(i).String()
		many = append(many, n)
		manyViews[n] = missionView{connected: true, state: state("Ready", 3)}
	}
	big := deriveMissionStatus(&edgev1alpha1.Mission{ObjectMeta: m.ObjectMeta}, many, nil, manyViews, now)
	if len(big.Clusters) != edgev1alpha1.MaxClusterStatuses || big.ClustersOmitted != 3000-edgev1alpha1.MaxClusterStatuses || big.Summary.Ready != 3000 {
		t.Errorf("3000 targets: %d entries, %d omitted, %d ready", len(big.Clusters), big.ClustersOmitted, big.Summary.Ready)
	}

	bad := deriveMissionStatus(m, nil, errors.New("spec.placement.clusterSelector: bad operator"), nil, now)
	if c := meta.FindStatusCondition(bad.Conditions, edgev1alpha1.MissionAccepted); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("invalid placement: Accepted %+v", c)
	}
}
