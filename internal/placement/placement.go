// Package placement decides which clusters of the tree a Mission selects, and
// through which child each selected cluster is reached. It is pure: no I/O, so
// every rule is a table test.
package placement

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
)

// Cluster is what placement needs to know about one cluster.
type Cluster struct {
	Name string
	// Labels are the cluster's EdgeCluster labels, built-in ones included.
	Labels map[string]string
	// Path lists the cluster names from the root to this cluster, itself last.
	Path []string
	// Unschedulable clusters receive no new missions.
	Unschedulable bool
}

// Select returns, sorted, the names of the clusters p selects: those named in
// Clusters, matching ClusterSelector, or in the subtree of a cluster named in
// Subtrees; minus those named in Exclude. An empty placement selects every
// cluster. An unschedulable cluster is selected only if it already runs the
// mission (it is in current): cordoning keeps new work away, not old work.
func Select(p edgev1alpha1.Placement, clusters []Cluster, current map[string]bool) ([]string, error) {
	var sel labels.Selector
	if p.ClusterSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(p.ClusterSelector)
		if err != nil {
			return nil, fmt.Errorf("spec.placement.clusterSelector: %w", err)
		}
		sel = s
	}
	all := len(p.Clusters) == 0 && p.ClusterSelector == nil && len(p.Subtrees) == 0
	var out []string
	for _, c := range clusters {
		if slices.Contains(p.Exclude, c.Name) {
			continue
		}
		if c.Unschedulable && !current[c.Name] {
			continue
		}
		if all || slices.Contains(p.Clusters, c.Name) ||
			(sel != nil && sel.Matches(labels.Set(c.Labels))) ||
			inSubtree(c.Path, p.Subtrees) {
			out = append(out, c.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func inSubtree(path, roots []string) bool {
	for _, r := range roots {
		if slices.Contains(path, r) {
			return true
		}
	}
	return false
}

// Keys of NextHops besides child names.
const (
	// Here holds the selected cluster that is self: apply locally.
	Here = "."
	// Elsewhere holds selected clusters not below self: not reachable from here.
	Elsewhere = ""
)

// NextHops groups selected clusters by the child of self through which each
// is reached: what self must send to each child. Self itself is under Here;
// clusters not below self are under Elsewhere.
func NextHops(selfPath []string, selected []Cluster) map[string][]string {
	out := map[string][]string{}
	for _, c := range selected {
		hop := Elsewhere
		switch {
		case slices.Equal(c.Path, selfPath):
			hop = Here
		case len(c.Path) > len(selfPath) && slices.Equal(c.Path[:len(selfPath)], selfPath):
			hop = c.Path[len(selfPath)]
		}
		out[hop] = append(out[hop], c.Name)
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}
