package placement

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
)

// The tree: root → eu → {berlin, paris}; root → us → {austin}; root → factory.
var tree = []Cluster{
	{Name: "eu", Path: []string{"root", "eu"}, Labels: map[string]string{"topology.fornax.io/region": "eu", edgev1alpha1.LabelDepth: "1"}},
	{Name: "berlin", Path: []string{"root", "eu", "berlin"}, Labels: map[string]string{"topology.fornax.io/region": "eu", edgev1alpha1.LabelDistro: "k3s", edgev1alpha1.LabelDepth: "2"}},
	{Name: "paris", Path: []string{"root", "eu", "paris"}, Labels: map[string]string{"topology.fornax.io/region": "eu", edgev1alpha1.LabelDistro: "k8s", edgev1alpha1.LabelDepth: "2"}},
	{Name: "austin", Path: []string{"root", "us", "austin"}, Labels: map[string]string{"topology.fornax.io/region": "us", edgev1alpha1.LabelDepth: "2"}},
	{Name: "us", Path: []string{"root", "us"}, Labels: map[string]string{"topology.fornax.io/region": "us", edgev1alpha1.LabelDepth: "1"}},
	{Name: "factory", Path: []string{"root", "factory"}, Unschedulable: true, Labels: map[string]string{edgev1alpha1.LabelDepth: "1"}},
}

func TestSelect(t *testing.T) {
	for _, tc := range []struct {
		name    string
		p       edgev1alpha1.Placement
		current map[string]bool
		want    string // comma-separated, sorted
		err     string
	}{
		{name: "empty selects every schedulable cluster", want: "austin,berlin,eu,paris,us"},
		{name: "by name", p: edgev1alpha1.Placement{Clusters: []string{"paris", "austin"}}, want: "austin,paris"},
		{name: "unknown name selects nothing", p: edgev1alpha1.Placement{Clusters: []string{"tokyo"}}, want: ""},
		{name: "by label", p: edgev1alpha1.Placement{ClusterSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{"topology.fornax.io/region": "eu"}}}, want: "berlin,eu,paris"},
		{name: "by built-in labels", p: edgev1alpha1.Placement{ClusterSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{edgev1alpha1.LabelDistro: "k3s"}}}, want: "berlin"},
		{name: "by expression", p: edgev1alpha1.Placement{ClusterSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: edgev1alpha1.LabelDepth, Operator: metav1.LabelSelectorOpIn, Values: []string{"2"}}}}},
			want: "austin,berlin,paris"},
		{name: "empty selector matches all", p: edgev1alpha1.Placement{ClusterSelector: &metav1.LabelSelector{}}, want: "austin,berlin,eu,paris,us"},
		{name: "subtree", p: edgev1alpha1.Placement{Subtrees: []string{"eu"}}, want: "berlin,eu,paris"},
		{name: "union minus exclusions", p: edgev1alpha1.Placement{Subtrees: []string{"eu"}, Clusters: []string{"austin"}, Exclude: []string{"eu", "paris"}},
			want: "austin,berlin"},
		{name: "unschedulable not newly selected", p: edgev1alpha1.Placement{Clusters: []string{"factory"}}, want: ""},
		{name: "unschedulable keeps what it runs", p: edgev1alpha1.Placement{Clusters: []string{"factory"}}, current: map[string]bool{"factory": true}, want: "factory"},
		{name: "invalid selector", p: edgev1alpha1.Placement{ClusterSelector: &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}}, err: "spec.placement.clusterSelector"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Select(tc.p, tree, tc.current)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want an error mentioning %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := strings.Join(got, ","); s != tc.want {
				t.Errorf("selected %q, want %q", s, tc.want)
			}
		})
	}
}

func TestNextHops(t *testing.T) {
	sel := []Cluster{tree[1], tree[2], tree[3], tree[0]}
	got := NextHops([]string{"root"}, sel)
	if !slices.Equal(got["eu"], []string{"berlin", "eu", "paris"}) || !slices.Equal(got["us"], []string{"austin"}) || len(got) != 2 {
		t.Errorf("from root: %v", got)
	}
	got = NextHops([]string{"root", "eu"}, sel)
	if !slices.Equal(got["berlin"], []string{"berlin"}) || !slices.Equal(got["paris"], []string{"paris"}) ||
		!slices.Equal(got[Here], []string{"eu"}) || !slices.Equal(got[Elsewhere], []string{"austin"}) {
		t.Errorf("from eu: %v (eu is here; austin is not below eu)", got)
	}
}
