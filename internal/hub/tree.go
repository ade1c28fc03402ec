package hub

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// A hub shows every cluster of its subtree as an EdgeCluster: its children,
// which joined it, and their descendants, which their children report. The
// descendants' EdgeClusters are the hub's to create, update and delete.
const (
	// LabelVia marks a descendant's EdgeCluster with the child it is reached through.
	LabelVia = "edge.fornax.io/via"
	// AnnotationInherited lists the label keys a cluster inherits from its ancestors.
	AnnotationInherited = "edge.fornax.io/inherited-labels"
	// InheritedPrefix is the prefix of the topology labels clusters inherit
	// from their ancestors (region, zone, site, org: see docs/api.md).
	InheritedPrefix = "topology.fornax.io/"
	// maxDepth bounds a path within one child's subtree (a malformed report
	// cannot loop).
	maxDepth = 64
)

// path is this cluster's path from the root ("root/eu").
func (h *Hub) path() string {
	if p := h.treePath.Load(); p != nil && *p != "" {
		return *p
	}
	return h.opts.Path
}

// depth is this cluster's depth: the root's is 0.
func (h *Hub) depth() int32 { return int32(strings.Count(h.path(), "/")) }

// SetPath records this cluster's path in the tree, as its own parent states
// it: every cluster below moves with it.
func (h *Hub) SetPath(path string) {
	if path == "" || path == h.path() {
		return
	}
	h.treePath.Store(&path)
	h.log.Info("this cluster's place in the tree", "path", path)
	h.mu.Lock()
	var names []string
	for _, c := range h.children {
		for n := range c.states {
			names = append(names, n)
		}
	}
	h.mu.Unlock()
	h.notify(names...)
	h.requestSync()
}

// locate finds the child through which a cluster is reached and its last
// reported state; c is nil when no child reports it. h.mu must be held.
func (h *Hub) locate(name string) (childName string, c *child, st *linkpb.ClusterState) {
	if c := h.children[name]; c != nil {
		return name, c, c.states[name]
	}
	for n, c := range h.children {
		if s, ok := c.states[name]; ok && n != name {
			return n, c, s
		}
	}
	return "", nil, nil
}

// chain returns the names from the child down to name within the child's
// reported states, following each state's parent; ok is false when the
// parents do not lead to the child.
func chain(states map[string]*linkpb.ClusterState, childName, name string) ([]string, bool) {
	out := []string{name}
	for cur := name; cur != childName; {
		s := states[cur]
		if s == nil || len(out) > maxDepth {
			return nil, false
		}
		cur = s.GetParent()
		out = append(out, cur)
	}
	slices.Reverse(out)
	return out, true
}

// descendantView is snapshot for a cluster below a child. h.mu must be held.
func (h *Hub) descendantView(v view, childName string, c *child, st *linkpb.ClusterState) view {
	names, ok := chain(c.states, childName, v.name)
	if !ok {
		return v
	}
	v.known = true
	v.own = st
	v.parent = st.GetParent()
	v.parentPath = h.path() + "/" + strings.Join(names[:len(names)-1], "/")
	v.parentDepth = h.depth() + int32(len(names)) - 1
	v.connectedAt = c.connectedAt
	v.lastReport = c.lastReport
	// Reached only while the child's link and every link below it are up.
	v.connected = c.session != nil && st.GetConnected()
	switch {
	case c.session == nil:
		v.disconnectedAt, v.lastSeen = c.disconnectedAt, c.lastSeen
	case !st.GetConnected():
		seen := time.UnixMilli(st.GetLastSeenUnixMs())
		v.disconnectedAt, v.lastSeen = seen, seen
	default:
		v.lastSeen = c.lastSeen
	}
	return v
}

// Subtree returns the state of every cluster below this one, for this
// cluster's own report to its parent: each child as this hub sees it (its
// link, its labels here) and its descendants as the child relayed them.
//
// A child that has reported nothing since this hub started (it restarted,
// and the child has not reconnected yet) is reported from what is stored
// here, its EdgeClusters, as disconnected: its subtree is out of reach, not
// gone. Reporting it gone would make the parent delete its EdgeClusters and
// take it out of every placement, which deletes its missions.
func (h *Hub) Subtree() []*linkpb.ClusterState {
	stored := &edgev1alpha1.EdgeClusterList{}
	if h.client != nil {
		// From the cache, read-only; an error leaves only the live view.
		_ = h.client.List(context.Background(), stored, client.UnsafeDisableDeepCopy)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*linkpb.ClusterState
	for i := range stored.Items {
		ec := &stored.Items[i]
		child := ec.Labels[LabelVia]
		if child == "" {
			child = ec.Name
		}
		if c := h.children[child]; c != nil && len(c.states) > 0 {
			continue // the child's own report says what is below it
		}
		out = append(out, storedState(ec, h.opts.Name))
	}
	names := make([]string, 0, len(h.children))
	for n := range h.children {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := h.children[n]
		for _, s := range sortedStates(c.states) {
			s = proto.CloneOf(s)
			if s.GetName() == n {
				s.Parent = h.opts.Name
				s.Connected = c.session != nil
				s.Labels = h.childLabels[n]
			} else if c.session == nil {
				s.Connected = false
			}
			if !s.GetConnected() && s.GetLastSeenUnixMs() == 0 {
				s.LastSeenUnixMs = c.lastSeen.UnixMilli()
			}
			if c.session == nil && s.GetName() != n && s.GetLastSeenUnixMs() > c.lastSeen.UnixMilli() {
				s.LastSeenUnixMs = c.lastSeen.UnixMilli()
			}
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// storedState is what is known of a cluster of the subtree from its stored
// EdgeCluster alone: who it is, where, and when it was last heard from;
// disconnected.
func storedState(ec *edgev1alpha1.EdgeCluster, self string) *linkpb.ClusterState {
	s := &linkpb.ClusterState{Name: ec.Name, Parent: ec.Status.Parent, Labels: ownLabels(ec)}
	if ec.Labels[LabelVia] == "" {
		s.Parent = self
	}
	if t := ec.Status.LastHeartbeatTime; t != nil {
		s.LastSeenUnixMs = t.UnixMilli()
	}
	return s
}

func sortedStates(m map[string]*linkpb.ClusterState) []*linkpb.ClusterState {
	out := make([]*linkpb.ClusterState, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// syncDescendants creates the EdgeClusters of the clusters a child reports
// below it and deletes those it no longer reports. A reported name that is a
// cluster elsewhere in the tree is refused (logged) and not shown.
func (h *Hub) syncDescendants(ctx context.Context, childName string) error {
	h.mu.Lock()
	c := h.children[childName]
	if c == nil || c.lastSeq == 0 {
		// Nothing reported by this child since this hub started: what it
		// has below is unknown, not gone. Deleting its descendants now would
		// take them out of every placement and delete their missions.
		h.mu.Unlock()
		return nil
	}
	want := map[string]*linkpb.ClusterState{}
	for n, s := range c.states {
		if n == childName {
			continue
		}
		if owner, _, _ := h.locate(n); owner != childName || h.children[n] != nil || n == h.opts.Name {
			h.log.Warn("a child reports a cluster that is elsewhere in the tree; ignored", "child", childName, "cluster", n, "owner", owner)
			continue
		}
		want[n] = s
	}
	h.mu.Unlock()
	return h.setDescendants(ctx, childName, want)
}

// setDescendants makes the EdgeClusters shown below a child exactly want
// (none: the child was removed, and its subtree goes with it).
func (h *Hub) setDescendants(ctx context.Context, childName string, want map[string]*linkpb.ClusterState) error {
	list := &edgev1alpha1.EdgeClusterList{}
	var sel client.ListOption = client.MatchingLabels{LabelVia: childName}
	if h.viaIndexed {
		sel = client.MatchingFields{indexVia: childName}
	}
	if err := h.client.List(ctx, list, sel); err != nil {
		return err
	}
	have := map[string]bool{}
	for i := range list.Items {
		ec := &list.Items[i]
		have[ec.Name] = true
		if _, ok := want[ec.Name]; !ok {
			if err := h.client.Delete(ctx, ec); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting EdgeCluster %s (no longer below %s): %w", ec.Name, childName, err)
			}
			h.log.Info("a cluster left the subtree", "cluster", ec.Name, "via", childName)
		}
	}
	for n := range want {
		if have[n] {
			continue
		}
		ec := &edgev1alpha1.EdgeCluster{}
		ec.Name = n
		ec.Labels = map[string]string{LabelVia: childName}
		err := h.client.Create(ctx, ec)
		switch {
		case apierrors.IsAlreadyExists(err):
			h.log.Warn("a reported descendant has the name of an existing EdgeCluster; ignored", "cluster", n, "via", childName)
		case err != nil:
			return fmt.Errorf("creating EdgeCluster %s (below %s): %w", n, childName, err)
		default:
			h.log.Info("a cluster joined the subtree", "cluster", n, "via", childName)
			h.notify(n)
		}
	}
	return nil
}

// wantLabels computes a cluster's labels: for a descendant, those its parent
// gave it (reported), for a child those set here; then the topology labels
// of its ancestors it does not set itself; then the built-in ones.
func (h *Hub) wantLabels(ctx context.Context, ec *edgev1alpha1.EdgeCluster, v view, distro edgev1alpha1.Distro) (map[string]string, string) {
	labels := maps.Clone(ec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	for _, k := range strings.Split(ec.Annotations[AnnotationInherited], ",") {
		delete(labels, k)
	}
	descendant := ec.Labels[LabelVia] != ""
	if descendant && v.own != nil {
		for k := range labels {
			if k != LabelVia && !isBuiltin(k) {
				delete(labels, k)
			}
		}
		maps.Copy(labels, v.own.GetLabels())
	}
	var inherited []string
	if v.parent != "" && v.parent != h.opts.Name {
		parent := &edgev1alpha1.EdgeCluster{}
		if err := h.client.Get(ctx, client.ObjectKey{Name: v.parent}, parent); err == nil {
			for k, val := range parent.Labels {
				if _, own := labels[k]; !own && strings.HasPrefix(k, InheritedPrefix) {
					labels[k] = val
					inherited = append(inherited, k)
				}
			}
		}
	}
	sort.Strings(inherited)
	maps.Copy(labels, builtinLabels(ec.Name, v.parent, v.parentDepth+1, distro))
	return labels, strings.Join(inherited, ",")
}

func isBuiltin(k string) bool {
	switch k {
	case edgev1alpha1.LabelClusterName, edgev1alpha1.LabelParent, edgev1alpha1.LabelDepth, edgev1alpha1.LabelDistro:
		return true
	}
	return false
}

// ownLabels returns a child's labels as set here, for its state upward.
func ownLabels(ec *edgev1alpha1.EdgeCluster) map[string]string {
	out := map[string]string{}
	inherited := strings.Split(ec.Annotations[AnnotationInherited], ",")
	for k, v := range ec.Labels {
		if !isBuiltin(k) && k != LabelVia && !slices.Contains(inherited, k) {
			out[k] = v
		}
	}
	return out
}

// notifyBelow asks for the clusters below name to be looked at again. Only
// the child that reaches name can report anything below it: one child's
// states are searched, not every child's (ten thousand of them at a root).
func (h *Hub) notifyBelow(name string) {
	h.mu.Lock()
	var names []string
	if owner, c, _ := h.locate(name); c != nil {
		for n := range c.states {
			if n == name || n == owner {
				continue
			}
			if path, ok := chain(c.states, owner, n); ok && slices.Contains(path, name) {
				names = append(names, n)
			}
		}
	}
	h.mu.Unlock()
	if len(names) > 0 {
		h.notify(names...)
	}
}

// subtreeNames returns a child and every cluster it reports below it.
func (h *Hub) subtreeNames(child string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []string{child}
	if c := h.children[child]; c != nil {
		for n := range c.states {
			if n != child {
				out = append(out, n)
			}
		}
	}
	return out
}

// CheckName tells whether a cluster name is taken anywhere in the tree, as far
// as this hub and its ancestors know: this cluster's own name, a cluster of
// its subtree, or (asked upward) one elsewhere. The same cluster (uid) may
// keep its name; a cluster below the asking child (asker, "" for a local
// join) is the asker's to judge.
func (h *Hub) CheckName(ctx context.Context, name, uid, asker string) (bool, string, error) {
	if name == h.opts.Name {
		return true, fmt.Sprintf("%q is the name of cluster %s", name, h.path()), nil
	}
	ec := &edgev1alpha1.EdgeCluster{}
	err := h.client.Get(ctx, client.ObjectKey{Name: name}, ec)
	switch {
	case err == nil && asker != "" && (ec.Labels[LabelVia] == asker || ec.Name == asker):
		// In the asker's own subtree: it has checked that itself.
	case err == nil && (ec.Labels[LabelVia] != "" || ec.Annotations[AnnotationClusterUID] != uid):
		where := ec.Status.Path
		if where == "" {
			where = h.path() + "/.../" + name
		}
		return true, fmt.Sprintf("the name %q is taken by cluster %s", name, where), nil
	case err != nil && !apierrors.IsNotFound(err):
		return false, "", fmt.Errorf("reading EdgeCluster %s: %w", name, err)
	}
	if h.opts.CheckNameUp != nil {
		return h.opts.CheckNameUp(ctx, name, uid)
	}
	return false, "", nil
}

// answerNameCheck answers a child's NameCheck on its session.
func (h *Hub) answerNameCheck(sess *session, asker string, q *linkpb.NameCheck) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := &linkpb.NameCheckResult{RequestId: q.GetRequestId()}
	taken, msg, err := h.CheckName(ctx, q.GetName(), q.GetClusterUid(), asker)
	switch {
	case err != nil:
		r.Taken, r.Message = true, "cannot confirm that the name is free in the tree: "+err.Error()
	default:
		r.Taken, r.Message = taken, msg
	}
	select {
	case sess.out <- &linkpb.ParentFrame{Body: &linkpb.ParentFrame_NameCheckResult{NameCheckResult: r}}:
	case <-sess.done:
	}
}
