package hub

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
	"github.com/fornax-edge/fornax/internal/netplane"
	"github.com/fornax-edge/fornax/internal/placement"
)

// The kinds of the network API as they travel down the tree (ObjectVersion.kind).
const (
	KindVPC     = "VPC"
	KindSubnet  = "Subnet"
	KindGateway = "Gateway"
)

// networkKinds are the kinds of the network API, in the order a child
// stores them (a subnet's VPC first).
var networkKinds = []string{KindVPC, KindSubnet, KindGateway}

// netWorld is what a hub holds of the network API and of its subtree: the
// input of planNetwork.
type netWorld struct {
	// hop maps every cluster below this hub to the child it is reached
	// through (a child maps to itself).
	hop      map[string]string
	vpcs     []*networkv1alpha1.VPC
	subnets  []*networkv1alpha1.Subnet
	gateways []*networkv1alpha1.Gateway
}

// netPlan is, for each child, the network objects (link.ObjectKey) it must
// hold and the clusters of its subtree each one is for (sorted).
type netPlan map[string]map[string][]string

// planNetwork is the delivery rule of the network API: a child receives
// what the clusters of its subtree need and nothing else.
//
//   - A VPC with a VNI goes to every child whose subtree holds a cluster
//     that owns one of its (accepted) subnets; its targets are those clusters.
//   - Every accepted subnet of such a VPC goes with it, with the same
//     targets: the subtree's own subnets, and the others as routes.
//   - The Gateway of a cluster outside the child's subtree goes to it when
//     that cluster shares a VPC with a cluster inside; the targets are the
//     clusters inside that share one.
//
// It is pure: the caller decides which objects exist (a terminating object
// is left out to compute what is desired, kept in to compute who may still
// hold it).
func planNetwork(w netWorld) netPlan {
	accepted, _ := acceptSubnets(w.vpcs, w.subnets)
	vni := map[string]bool{}
	for _, v := range w.vpcs {
		if v.Status.VNI > 0 {
			vni[v.Name] = true
		}
	}
	// The clusters taking part in each VPC, and the VPC's subnets.
	members := map[string][]string{}
	subnetsOf := map[string][]string{}
	for _, s := range accepted {
		if !vni[s.Spec.VPC] {
			continue
		}
		subnetsOf[s.Spec.VPC] = append(subnetsOf[s.Spec.VPC], s.Name)
		if !slices.Contains(members[s.Spec.VPC], s.Spec.Cluster) {
			members[s.Spec.VPC] = append(members[s.Spec.VPC], s.Spec.Cluster)
		}
	}
	out := netPlan{}
	add := func(child, key string, targets []string) {
		if out[child] == nil {
			out[child] = map[string][]string{}
		}
		out[child][key] = mergeSorted(out[child][key], targets)
	}
	for vpc, clusters := range members {
		for child, targets := range byHop(w.hop, clusters) {
			add(child, link.ObjectKey(KindVPC, "", vpc), targets)
			for _, s := range subnetsOf[vpc] {
				add(child, link.ObjectKey(KindSubnet, "", s), targets)
			}
		}
	}
	for _, g := range w.gateways {
		owner := g.Name
		for _, clusters := range members {
			if !slices.Contains(clusters, owner) {
				continue
			}
			for child, targets := range byHop(w.hop, clusters) {
				if w.hop[owner] == child {
					continue // the owner is in that subtree: its facts travel up, not down
				}
				add(child, link.ObjectKey(KindGateway, "", g.Name), targets)
			}
		}
	}
	return out
}

// byHop groups clusters by the child they are reached through; clusters
// not below (this cluster itself, or clusters elsewhere in the tree) are left out.
func byHop(hop map[string]string, clusters []string) map[string][]string {
	out := map[string][]string{}
	for _, c := range clusters {
		if child, ok := hop[c]; ok {
			out[child] = append(out[child], c)
		}
	}
	for k := range out {
		slices.Sort(out[k])
	}
	return out
}

// mergeSorted returns the sorted union of two name lists.
func mergeSorted(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// acceptSubnets checks subnets against their VPCs: a subnet is accepted when
// it names an owning cluster and an existing VPC, its CIDR is an IPv4
// network inside the VPC's, and it overlaps no subnet of the VPC accepted
// before it (older first, then by name). The root's admission refuses such
// subnets already; this keeps a conflict that slipped past it (a restored
// backup) from breaking the VPC in every cluster. It returns the accepted
// subnets in that order and, for the others, why not.
func acceptSubnets(vpcs []*networkv1alpha1.VPC, subnets []*networkv1alpha1.Subnet) ([]*networkv1alpha1.Subnet, map[string]string) {
	cidrs := map[string]netip.Prefix{}
	fromParentVPC := map[string]bool{}
	for _, v := range vpcs {
		fromParentVPC[v.Name] = v.Labels[LabelFromParent] == "true"
		if p, err := netip.ParsePrefix(v.Spec.CIDR); err == nil && p.Addr().Is4() {
			cidrs[v.Name] = p.Masked()
		}
	}
	ordered := slices.Clone(subnets)
	slices.SortFunc(ordered, func(a, b *networkv1alpha1.Subnet) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	type held struct {
		name string
		cidr netip.Prefix
	}
	taken := map[string][]held{}
	var accepted []*networkv1alpha1.Subnet
	rejected := map[string]string{}
	for _, s := range ordered {
		vpc, ok := cidrs[s.Spec.VPC]
		cidr, err := netip.ParsePrefix(s.Spec.CIDR)
		switch {
		case s.Spec.Cluster == "":
			rejected[s.Name] = "the subnet names no owning cluster"
			continue
		case !ok:
			rejected[s.Name] = fmt.Sprintf("VPC %s does not exist", s.Spec.VPC)
			continue
		case fromParentVPC[s.Spec.VPC] && s.Labels[LabelFromParent] != "true":
			// Its parent would never hear of it: the VPC's other clusters
			// could not route to it.
			rejected[s.Name] = fmt.Sprintf("VPC %s was created above this cluster: create its subnets where it was created", s.Spec.VPC)
			continue
		case err != nil || !cidr.Addr().Is4() || cidr.Masked() != cidr || cidr.Bits() > 30:
			rejected[s.Name] = fmt.Sprintf("CIDR %q is not an IPv4 network address with a prefix length of at most 30", s.Spec.CIDR)
			continue
		case !vpc.Contains(cidr.Addr()) || cidr.Bits() < vpc.Bits():
			rejected[s.Name] = fmt.Sprintf("CIDR %s is outside VPC %s (%s)", cidr, s.Spec.VPC, vpc)
			continue
		}
		i := slices.IndexFunc(taken[s.Spec.VPC], func(h held) bool { return h.cidr.Overlaps(cidr) })
		if i >= 0 {
			o := taken[s.Spec.VPC][i]
			rejected[s.Name] = fmt.Sprintf("CIDR %s overlaps subnet %s (%s) of VPC %s", cidr, o.name, o.cidr, s.Spec.VPC)
			continue
		}
		taken[s.Spec.VPC] = append(taken[s.Spec.VPC], held{s.Name, cidr})
		accepted = append(accepted, s)
	}
	return accepted, rejected
}

// hops maps every cluster below this hub to the child it is reached through.
func hops(self []string, clusters []placement.Cluster) map[string]string {
	out := map[string]string{}
	for child, names := range placement.NextHops(self, clusters) {
		if child == placement.Here || child == placement.Elsewhere {
			continue
		}
		for _, n := range names {
			out[n] = child
		}
	}
	return out
}

// netObjects lists the network objects this hub holds. The slices point
// into the cache: read-only.
func (h *Hub) netObjects(ctx context.Context) (netWorld, error) {
	var w netWorld
	vpcs := &networkv1alpha1.VPCList{}
	if err := h.client.List(ctx, vpcs, client.UnsafeDisableDeepCopy); err != nil {
		return w, fmt.Errorf("listing VPCs: %w", err)
	}
	subnets := &networkv1alpha1.SubnetList{}
	if err := h.client.List(ctx, subnets, client.UnsafeDisableDeepCopy); err != nil {
		return w, fmt.Errorf("listing Subnets: %w", err)
	}
	gateways := &networkv1alpha1.GatewayList{}
	if err := h.client.List(ctx, gateways, client.UnsafeDisableDeepCopy); err != nil {
		return w, fmt.Errorf("listing Gateways: %w", err)
	}
	for i := range vpcs.Items {
		w.vpcs = append(w.vpcs, &vpcs.Items[i])
	}
	for i := range subnets.Items {
		w.subnets = append(w.subnets, &subnets.Items[i])
	}
	for i := range gateways.Items {
		w.gateways = append(w.gateways, &gateways.Items[i])
	}
	return w, nil
}

// withoutTerminating returns the world without the objects being deleted.
func (w netWorld) withoutTerminating() netWorld {
	live := func(o metav1.Object) bool { return o.GetDeletionTimestamp() == nil }
	out := netWorld{hop: w.hop}
	for _, v := range w.vpcs {
		if live(v) {
			out.vpcs = append(out.vpcs, v)
		}
	}
	for _, s := range w.subnets {
		if live(s) {
			out.subnets = append(out.subnets, s)
		}
	}
	for _, g := range w.gateways {
		if live(g) {
			out.gateways = append(out.gateways, g)
		}
	}
	return out
}

// netWorld returns the network objects and the subtree (hop) of this hub.
func (h *Hub) netWorld(ctx context.Context) (netWorld, error) {
	w, err := h.netObjects(ctx)
	if err != nil || len(w.vpcs)+len(w.subnets)+len(w.gateways) == 0 {
		return w, err // no network: no need to walk the tree
	}
	clusters, err := h.clustersBelow(ctx)
	if err != nil {
		return w, fmt.Errorf("listing EdgeClusters: %w", err)
	}
	w.hop = hops(strings.Split(h.path(), "/"), clusters)
	return w, nil
}

// desiredNetwork computes, for every child, the network objects it must
// hold (planNetwork), encoded once each, and returns every network object
// this hub knows (terminating ones included: a child holding one is told
// of its deletion).
func (h *Hub) desiredNetwork(ctx context.Context) (map[string]map[string]*linkpb.Object, map[string]bool, error) {
	all, err := h.netWorld(ctx)
	if err != nil {
		return nil, nil, err
	}
	known := map[string]bool{}
	encoded := map[string]encodedObject{}
	for _, v := range all.vpcs {
		known[link.ObjectKey(KindVPC, "", v.Name)] = true
		encoded[link.ObjectKey(KindVPC, "", v.Name)] = h.encode(KindVPC, v, vpcPayload(v))
	}
	for _, s := range all.subnets {
		known[link.ObjectKey(KindSubnet, "", s.Name)] = true
		encoded[link.ObjectKey(KindSubnet, "", s.Name)] = h.encode(KindSubnet, s, subnetPayload(s))
	}
	for _, g := range all.gateways {
		known[link.ObjectKey(KindGateway, "", g.Name)] = true
		encoded[link.ObjectKey(KindGateway, "", g.Name)] = h.encode(KindGateway, g, gatewayPayload(g))
	}
	out := map[string]map[string]*linkpb.Object{}
	for child, objs := range planNetwork(all.withoutTerminating()) {
		out[child] = make(map[string]*linkpb.Object, len(objs))
		for key, targets := range objs {
			e, ok := encoded[key]
			if !ok || e.err != nil {
				if ok {
					h.log.Warn("cannot encode a network object for the children", "object", key, "error", e.err.Error())
				}
				continue
			}
			kind, ns, name := link.SplitObjectKey(key)
			v := &linkpb.ObjectVersion{Kind: kind, Namespace: ns, Name: name, Uid: e.uid, Generation: e.generation,
				Digest: netDigest(e.payload, targets, e.origin)}
			out[child][key] = &linkpb.Object{Version: v, Payload: e.payload, Targets: targets, Origin: e.origin}
		}
	}
	return out, known, nil
}

// encodedObject is a network object as it travels: its payload, the
// generation and origin it carries.
type encodedObject struct {
	payload    []byte
	uid        string
	generation int64
	origin     string
	err        error
}

// encode encodes a network object's payload once, with the generation and
// origin it travels with: the origin's, relayed unchanged.
func (h *Hub) encode(kind string, o client.Object, payload any) encodedObject {
	e := encodedObject{uid: string(o.GetUID()), generation: o.GetGeneration(), origin: h.opts.Name}
	if o.GetLabels()[LabelFromParent] == "true" {
		if g, err := strconv.ParseInt(o.GetAnnotations()[AnnotationSourceGeneration], 10, 64); err == nil {
			e.generation = g
		}
		if origin := o.GetAnnotations()[AnnotationOrigin]; origin != "" {
			e.origin = origin
		}
	}
	e.payload, e.err = json.Marshal(payload)
	if e.err != nil {
		e.err = fmt.Errorf("encoding %s %s: %w", kind, o.GetName(), e.err)
	}
	return e
}

// netDigest is the digest of what a child receives of a network object:
// its payload (status included, as the VNI lives there), targets and origin.
func netDigest(payload []byte, targets []string, origin string) string {
	h := sha256.New()
	h.Write(payload)
	fmt.Fprintf(h, "|%s|%s", strings.Join(targets, ","), origin)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// The payloads: what a child receives of each kind. Identity, spec and the
// status fields the edge needs (the VNI, the subnet's gateway address, a
// gateway's facts), none of the sender's conditions or bookkeeping, which
// would make every status change travel.

func vpcPayload(v *networkv1alpha1.VPC) *networkv1alpha1.VPC {
	return &networkv1alpha1.VPC{
		TypeMeta:   metav1.TypeMeta{APIVersion: networkv1alpha1.GroupVersion.String(), Kind: KindVPC},
		ObjectMeta: metav1.ObjectMeta{Name: v.Name},
		Spec:       v.Spec,
		Status:     networkv1alpha1.VPCStatus{VNI: v.Status.VNI, Clusters: v.Status.Clusters},
	}
}

// subnetPayload carries the subnet's gateway address computed from its
// CIDR, not read from its status: a new subnet travels once, not a second
// time when the root's status catches up.
func subnetPayload(s *networkv1alpha1.Subnet) *networkv1alpha1.Subnet {
	p := &networkv1alpha1.Subnet{
		TypeMeta:   metav1.TypeMeta{APIVersion: networkv1alpha1.GroupVersion.String(), Kind: KindSubnet},
		ObjectMeta: metav1.ObjectMeta{Name: s.Name},
		Spec:       s.Spec,
	}
	if cidr, err := netip.ParsePrefix(s.Spec.CIDR); err == nil && cidr.Addr().Is4() {
		p.Status.Gateway = netplane.GatewayAddr(cidr).String()
	}
	return p
}

func gatewayPayload(g *networkv1alpha1.Gateway) *networkv1alpha1.Gateway {
	return &networkv1alpha1.Gateway{
		TypeMeta:   metav1.TypeMeta{APIVersion: networkv1alpha1.GroupVersion.String(), Kind: KindGateway},
		ObjectMeta: metav1.ObjectMeta{Name: g.Name},
		Spec:       g.Spec,
		Status:     networkv1alpha1.GatewayStatus{VPCs: g.Status.VPCs, Subnets: g.Status.Subnets, Generation: g.Status.Generation},
	}
}

// netDeliveryVersion names what of a network object travels down the tree:
// a change to it needs a delivery pass.
func netDeliveryVersion(kind string, o client.Object) string {
	var payload any
	switch o := o.(type) {
	case *networkv1alpha1.VPC:
		payload = vpcPayload(o)
	case *networkv1alpha1.Subnet:
		payload = subnetPayload(o)
	case *networkv1alpha1.Gateway:
		payload = gatewayPayload(o)
	}
	raw, _ := json.Marshal(payload)
	sum := sha256.Sum256(raw)
	return fmt.Sprintf("%s|%s|%t|%s|%s", kind, o.GetUID(), o.GetDeletionTimestamp() != nil, hex.EncodeToString(sum[:8]),
		o.GetAnnotations()[AnnotationOrigin])
}
