package agent

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

func node(name string, ready bool, kubelet string, labels map[string]string) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods: resource.MustParse("110"), "nvidia.com/gpu": resource.MustParse("1")}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
			Capacity:   res, Allocatable: res,
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: kubelet},
		},
	}
}

func TestDetectDistro(t *testing.T) {
	for _, tc := range []struct {
		name, version, override string
		nodes                   []*corev1.Node
		want                    edgev1alpha1.Distro
	}{
		{"upstream", "v1.37.1", "", nil, edgev1alpha1.DistroKubernetes},
		{"k3s by version", "v1.30.2+k3s1", "", nil, edgev1alpha1.DistroK3s},
		{"k3s by node label", "v1.37.1", "", []*corev1.Node{node("n", true, "v1.37.1", map[string]string{"node.kubernetes.io/instance-type": "k3s"})}, edgev1alpha1.DistroK3s},
		{"k3s by kubelet", "v1.37.1", "", []*corev1.Node{node("n", true, "v1.37.1+k3s1", nil)}, edgev1alpha1.DistroK3s},
		{"eks", "v1.30.4-eks-a737599", "", nil, edgev1alpha1.DistroOther},
		{"rke2", "v1.30.4+rke2r1", "", nil, edgev1alpha1.DistroOther},
		{"override", "v1.37.1", "other", nil, edgev1alpha1.DistroOther},
		{"unknown override ignored", "v1.37.1", "openshift", nil, edgev1alpha1.DistroKubernetes},
		{"no version", "", "", nil, ""},
	} {
		if got := detectDistro(tc.version, tc.nodes, tc.override); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	s := summarize("v1.37.1", "v0.3.0", []*corev1.Node{node("a", true, "v1.37.1", nil), node("b", false, "v1.37.1", nil)}, "")
	if s.GetNodesTotal() != 2 || s.GetNodesReady() != 1 || !s.GetApiReachable() || s.GetAgentVersion() != "v0.3.0" {
		t.Fatalf("summary %v", s)
	}
	want := map[string]string{"cpu": "8", "memory": "16Gi", "pods": "220"}
	for k, v := range want {
		if s.GetAllocatable()[k] != v || s.GetCapacity()[k] != v {
			t.Errorf("%s: allocatable %q capacity %q, want %q", k, s.GetAllocatable()[k], s.GetCapacity()[k], v)
		}
	}
	if _, ok := s.GetCapacity()["nvidia.com/gpu"]; ok {
		t.Errorf("reports resources beyond cpu, memory and pods: %v", s.GetCapacity())
	}
	if down := summarize("", "v0.3.0", nil, ""); down.GetApiReachable() || down.GetMessage() == "" {
		t.Errorf("unreachable API server not reported: %v", down)
	}
}

func TestDiff(t *testing.T) {
	a := &linkpb.ClusterState{Name: "a", Summary: &linkpb.ClusterSummary{NodesTotal: 1}, ObservedUnixMs: 1}
	a2 := &linkpb.ClusterState{Name: "a", Summary: &linkpb.ClusterSummary{NodesTotal: 1}, ObservedUnixMs: 2}
	a3 := &linkpb.ClusterState{Name: "a", Summary: &linkpb.ClusterSummary{NodesTotal: 2}}
	b := &linkpb.ClusterState{Name: "b", Parent: "a"}
	if r := diff([]*linkpb.ClusterState{a}, []*linkpb.ClusterState{a2}, false); r != nil {
		t.Errorf("only the observation time changed, yet a report: %v", r)
	}
	if r := diff([]*linkpb.ClusterState{a, b}, []*linkpb.ClusterState{a3}, false); r == nil || len(r.Clusters) != 1 ||
		len(r.Removed) != 1 || r.Removed[0] != "b" || r.Full {
		t.Errorf("changed a, removed b: %v", r)
	}
	if r := diff([]*linkpb.ClusterState{a}, []*linkpb.ClusterState{a}, true); r == nil || !r.Full || len(r.Clusters) != 1 {
		t.Errorf("full report: %v", r)
	}
}
