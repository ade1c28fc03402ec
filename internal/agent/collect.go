package agent

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// summarize computes a cluster summary from its server version, the agent's
// own version and the nodes. It is pure, so that what is reported can be
// tested without a cluster.
func summarize(version, agentVersion string, nodes []*corev1.Node, distroOverride string) *linkpb.ClusterSummary {
	s := &linkpb.ClusterSummary{
		KubernetesVersion: version,
		AgentVersion:      agentVersion,
		Distro:            string(detectDistro(version, nodes, distroOverride)),
		NodesTotal:        int32(len(nodes)),
		ApiReachable:      version != "",
	}
	capacity := map[string]*resource.Quantity{}
	alloc := map[string]*resource.Quantity{}
	for _, n := range nodes {
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if ready {
			s.NodesReady++
		}
		add(capacity, n.Status.Capacity)
		add(alloc, n.Status.Allocatable)
	}
	s.Capacity = strings2(capacity)
	s.Allocatable = strings2(alloc)
	if !s.ApiReachable {
		s.Message = "the agent cannot reach its cluster's API server"
	}
	return s
}

// reported are the resources summed into capacity and allocatable.
var reported = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods}

func add(sum map[string]*resource.Quantity, l corev1.ResourceList) {
	for _, name := range reported {
		q, ok := l[name]
		if !ok {
			continue
		}
		if sum[string(name)] == nil {
			z := resource.Quantity{Format: q.Format}
			sum[string(name)] = &z
		}
		sum[string(name)].Add(q)
	}
}

func strings2(m map[string]*resource.Quantity) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, q := range m {
		out[k] = q.String()
	}
	return out
}

// detectDistro tells the Kubernetes distribution: an explicit override first;
// then K3s by its version suffix (v1.30.2+k3s1), its node label
// (node.kubernetes.io/instance-type=k3s) or its kubelet version; then upstream
// Kubernetes for a plain vX.Y.Z; anything else is other (EKS, GKE, RKE2, ...).
func detectDistro(version string, nodes []*corev1.Node, override string) edgev1alpha1.Distro {
	switch edgev1alpha1.Distro(override) {
	case edgev1alpha1.DistroKubernetes, edgev1alpha1.DistroK3s, edgev1alpha1.DistroOther:
		return edgev1alpha1.Distro(override)
	}
	if strings.Contains(version, "+k3s") {
		return edgev1alpha1.DistroK3s
	}
	for _, n := range nodes {
		if n.Labels["node.kubernetes.io/instance-type"] == "k3s" || strings.Contains(n.Status.NodeInfo.KubeletVersion, "+k3s") {
			return edgev1alpha1.DistroK3s
		}
	}
	if version == "" {
		return ""
	}
	if plainVersion(version) {
		return edgev1alpha1.DistroKubernetes
	}
	return edgev1alpha1.DistroOther
}

// plainVersion reports whether v is vMAJOR.MINOR.PATCH with nothing after,
// as upstream release builds report.
func plainVersion(v string) bool {
	v, ok := strings.CutPrefix(v, "v")
	if !ok {
		return false
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
