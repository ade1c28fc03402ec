package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
	"github.com/fornax-edge/fornax/internal/placement"
)

// Marks on the copy of a mission a child stores.
const (
	// LabelFromParent marks missions the parent sent; the child never touches
	// missions without it (its operators' own).
	LabelFromParent = "edge.fornax.io/from-parent"
	// AnnotationTargets lists the clusters of the child's subtree the mission is for.
	AnnotationTargets = "edge.fornax.io/targets"
	// AnnotationSourceGeneration is the mission's generation at the parent.
	AnnotationSourceGeneration = "edge.fornax.io/source-generation"
	// AnnotationDigest is the parent's digest of what it sent.
	AnnotationDigest = "edge.fornax.io/sent-digest"
	// AnnotationOrigin names the cluster where the mission was created.
	AnnotationOrigin = "edge.fornax.io/origin"
)

const missionKind = "Mission"

// missionKey is a mission's link.ObjectKey.
func missionKey(namespace, name string) string { return link.ObjectKey(missionKind, namespace, name) }

// clustersBelow returns the clusters this hub knows, for placement.
func (h *Hub) clustersBelow(ctx context.Context) ([]placement.Cluster, error) {
	list := &edgev1alpha1.EdgeClusterList{}
	// Read-only: the cache's own objects, not a copy of ten thousand of them
	// per delivery pass.
	if err := h.client.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := make([]placement.Cluster, 0, len(list.Items))
	here := strings.Split(h.path(), "/")
	for _, ec := range list.Items {
		path := append(slices.Clip(here), ec.Name)
		if ec.Status.Path != "" {
			path = strings.Split(ec.Status.Path, "/")
		}
		out = append(out, placement.Cluster{Name: ec.Name, Labels: ec.Labels, Path: path, Unschedulable: ec.Spec.Unschedulable})
	}
	return out, nil
}

// desiredObjects computes, for every child, the missions it must hold: those
// selecting a cluster of its subtree, with those clusters as targets. Each
// mission is encoded once, however many children it goes to.
//
// It also returns every mission this hub knows (terminating ones included):
// a mission a child holds that is known here but not desired for it is
// deleted there; one not known here at all is orphaned there (this hub may
// have lost its state), never deleted at once.
func (h *Hub) desiredObjects(ctx context.Context) (map[string]map[string]*linkpb.Object, map[string]bool, error) {
	missions := &edgev1alpha1.MissionList{}
	if err := h.client.List(ctx, missions, client.UnsafeDisableDeepCopy); err != nil { // read-only
		return nil, nil, err
	}
	clusters, err := h.clustersBelow(ctx)
	if err != nil {
		return nil, nil, err
	}
	known := make(map[string]bool, len(missions.Items))
	byName := map[string]placement.Cluster{}
	for _, c := range clusters {
		byName[c.Name] = c
	}
	self := strings.Split(h.path(), "/")
	out := map[string]map[string]*linkpb.Object{}
	for i := range missions.Items {
		m := &missions.Items[i]
		known[missionKey(m.Namespace, m.Name)] = true
		if m.DeletionTimestamp != nil {
			continue
		}
		names, err := h.missionTargets(m, clusters)
		if err != nil || len(names) == 0 {
			continue // the mission's status says why
		}
		sel := make([]placement.Cluster, 0, len(names))
		for _, n := range names {
			if c, ok := byName[n]; ok {
				sel = append(sel, c)
			}
		}
		payload, err := json.Marshal(missionPayload(m))
		if err != nil {
			return nil, nil, fmt.Errorf("encoding mission %s/%s: %w", m.Namespace, m.Name, err)
		}
		generation, origin := h.missionSource(m)
		for child, targets := range placement.NextHops(self, sel) {
			if child == placement.Here || child == placement.Elsewhere || len(targets) == 0 {
				continue
			}
			v := &linkpb.ObjectVersion{Kind: missionKind, Namespace: m.Namespace, Name: m.Name, Uid: string(m.UID), Generation: generation}
			v.Digest = digestOf(generation, targets)
			if out[child] == nil {
				out[child] = map[string]*linkpb.Object{}
			}
			out[child][missionKey(m.Namespace, m.Name)] = &linkpb.Object{Version: v, Payload: payload, Targets: targets, Origin: origin}
		}
	}
	return out, known, nil
}

// fromParent tells whether a mission is one the parent sent (relayed or
// applied here) rather than one created here.
func fromParent(m *edgev1alpha1.Mission) bool { return m.Labels[LabelFromParent] == "true" }

// missionTargets returns the clusters a mission is for: for one created
// here, what its placement selects among the clusters below; for one the
// parent sent, the targets the parent chose (placement is evaluated once,
// where the mission was created, with every label known there).
func (h *Hub) missionTargets(m *edgev1alpha1.Mission, clusters []placement.Cluster) ([]string, error) {
	if !fromParent(m) {
		return placement.Select(m.Spec.Placement, clusters, nil)
	}
	var out []string
	for _, t := range strings.Split(m.Annotations[AnnotationTargets], ",") {
		if t != "" {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}

// missionSource returns the generation and origin a mission travels with:
// the origin's, relayed unchanged.
func (h *Hub) missionSource(m *edgev1alpha1.Mission) (int64, string) {
	if !fromParent(m) {
		return m.Generation, h.opts.Name
	}
	gen, err := strconv.ParseInt(m.Annotations[AnnotationSourceGeneration], 10, 64)
	if err != nil {
		gen = m.Generation
	}
	return gen, m.Annotations[AnnotationOrigin]
}

// missionPayload is what a child receives of a mission: its identity and
// spec, none of the parent's status or bookkeeping.
func missionPayload(m *edgev1alpha1.Mission) *edgev1alpha1.Mission {
	return &edgev1alpha1.Mission{
		TypeMeta:   metav1.TypeMeta{APIVersion: edgev1alpha1.GroupVersion.String(), Kind: missionKind},
		ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, Labels: m.Labels},
		Spec:       m.Spec,
	}
}

func digestOf(generation int64, targets []string) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d|%s", generation, strings.Join(targets, ","))))
	return hex.EncodeToString(sum[:8])
}

// orphanNotice marks, in session.sent, an object the child was told is
// orphaned.
const orphanNotice = "\x00orphaned"

// sendObjects sends a child what differs between desired and what it holds:
// new and changed objects; deletions of objects known here that it should
// no longer hold; orphan notices for objects it holds that are not known
// here at all. Objects of the kinds in skip (this pass could not compute
// them) are left as they are.
func (h *Hub) sendObjects(child string, desired map[string]*linkpb.Object, known map[string]bool, skip map[string]bool) {
	h.mu.Lock()
	c := h.children[child]
	if c == nil || c.session == nil {
		h.mu.Unlock()
		return
	}
	sess := c.session
	if sess.haveDigests != nil {
		// The first pass of a session whose Hello carried bucket digests:
		// what matches is what the child holds; ask for the rest.
		h.compareHave(child, sess, desired)
	}
	if sess.haveWanted != nil {
		h.mu.Unlock()
		return // until the child says what it holds there
	}
	batch := &linkpb.ObjectBatch{}
	for key, obj := range desired {
		if sess.sent[key] != obj.GetVersion().GetDigest() {
			batch.Objects = append(batch.Objects, obj)
			sess.sent[key] = obj.GetVersion().GetDigest()
		}
	}
	var deleted []string
	for key, digest := range sess.sent {
		if _, ok := desired[key]; ok {
			continue
		}
		kind, ns, name := link.SplitObjectKey(key)
		if skip[kind] {
			continue
		}
		v := &linkpb.ObjectVersion{Kind: kind, Namespace: ns, Name: name}
		switch {
		case known[key]:
			batch.Objects = append(batch.Objects, &linkpb.Object{Deleted: true, Version: v})
			delete(sess.sent, key)
			deleted = append(deleted, key)
		case digest != orphanNotice:
			batch.Objects = append(batch.Objects, &linkpb.Object{Orphaned: true, Version: v})
			sess.sent[key] = orphanNotice
			h.log.Warn("a child holds an object this cluster does not know; told it is orphaned", "cluster", child, "kind", kind, "object", key)
		}
	}
	if len(batch.Objects) == 0 {
		h.mu.Unlock()
		return
	}
	sess.batchSeq++
	batch.Seq = sess.batchSeq
	for _, key := range deleted {
		sess.deleting[key] = batch.Seq // until the child acknowledges the batch
	}
	h.mu.Unlock()
	select {
	case sess.out <- &linkpb.ParentFrame{Body: &linkpb.ParentFrame_Objects{Objects: batch}}:
		objectsSent.Add(float64(len(batch.Objects)))
		h.log.Debug("objects sent", "cluster", child, "seq", batch.Seq, "objects", len(batch.Objects), "first", batch.Objects[0].GetVersion().GetName())
	case <-sess.done:
	}
}

// compareHave compares the child's bucket digests with what it should hold:
// in the buckets that match, it holds exactly that; for the others it is
// asked (HaveRequest). h.mu is held.
func (h *Hub) compareHave(child string, sess *session, desired map[string]*linkpb.Object) {
	mine := make([]*linkpb.ObjectVersion, 0, len(desired))
	for _, o := range desired {
		mine = append(mine, o.GetVersion())
	}
	differ := link.DifferingBuckets(sess.haveDigests, link.HaveDigests(mine))
	sess.haveDigests = nil
	wanted := map[uint32]bool{}
	for _, b := range differ {
		wanted[b] = true
	}
	for key, o := range desired {
		if !wanted[link.Bucket(key)] {
			sess.sent[key] = o.GetVersion().GetDigest()
		}
	}
	if len(differ) == 0 {
		return
	}
	sess.haveWanted = wanted
	select {
	case sess.out <- &linkpb.ParentFrame{Body: &linkpb.ParentFrame_HaveRequest{HaveRequest: &linkpb.HaveRequest{Buckets: differ}}}:
		h.log.Debug("asked a child what it holds", "cluster", child, "buckets", len(differ))
	default:
		// The stream's queue is full (it is nearly empty at a session's
		// start): the child gets everything it should hold in those buckets;
		// anything else it holds there waits for its next session.
		sess.haveWanted = nil
		h.log.Warn("cannot ask a child what it holds; sending what it should hold", "cluster", child)
	}
}

// requestSync asks the delivery worker for a pass over every child.
func (h *Hub) requestSync() {
	select {
	case h.syncNeeded <- struct{}{}:
	default: // a pass is already pending and will see this change
	}
}

// syncLoop is the delivery worker: one pass over every child per batch of
// requests, however many missions changed.
func (h *Hub) syncLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.syncNeeded:
			began := time.Now()
			h.syncAllObjects(ctx)
			// A pass over ten thousand children takes a while; requests
			// arriving meanwhile (a crowd reconnecting) wait as long again
			// and are served by one pass, so delivery takes at most about
			// half the hub's time instead of all of it.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(min(time.Since(began), time.Second)):
			}
		}
	}
}

// syncAllObjects re-sends to every connected child what changed: missions
// and network objects.
func (h *Hub) syncAllObjects(ctx context.Context) {
	desired, known, err := h.desiredObjects(ctx)
	if err != nil {
		h.log.Warn("cannot compute the missions for the children", "error", err.Error())
		return
	}
	var skip map[string]bool
	netDesired, netKnown, err := h.desiredNetwork(ctx)
	if err != nil {
		// Missions still travel; the children keep the network objects
		// they hold until a pass can compute them.
		h.log.Warn("cannot compute the network objects for the children", "error", err.Error())
		skip = map[string]bool{KindVPC: true, KindSubnet: true, KindGateway: true}
	}
	for child, objs := range netDesired {
		if desired[child] == nil {
			desired[child] = map[string]*linkpb.Object{}
		}
		maps.Copy(desired[child], objs)
	}
	maps.Copy(known, netKnown)
	h.mu.Lock()
	var names []string
	for n, c := range h.children {
		if c.session != nil {
			names = append(names, n)
		}
	}
	h.mu.Unlock()
	for _, n := range names {
		h.sendObjects(n, desired[n], known, skip)
	}
}
