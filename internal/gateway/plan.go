package gateway

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/netplane"
)

// maxVNI is the largest VXLAN network identifier (24 bits).
const maxVNI = 1<<24 - 1

// Input is what the gateway reads from its cluster's API server: the
// objects are read-only.
type Input struct {
	// Cluster is this cluster's name: subnets with spec.cluster equal to it
	// are local.
	Cluster string
	// Prefix names the router namespaces ("" is netplane.DefaultPrefix).
	Prefix string
	// Endpoint is this gateway's underlay address.
	Endpoint netip.Addr
	VPCs     []*networkv1alpha1.VPC
	Subnets  []*networkv1alpha1.Subnet
	Gateways []*networkv1alpha1.Gateway
}

// Plan is what the gateway programs and what it says about it.
type Plan struct {
	// Spec is the data plane to apply.
	Spec netplane.Spec
	// VPCs and Subnets are the VPCs it serves and its local subnets, sorted.
	VPCs    []string
	Subnets []string
	// Peers are the other clusters of those VPCs, by name.
	Peers []Peer
	// Problems name the objects left out and why, sorted.
	Problems []string
}

// Peer is another cluster owning subnets of a VPC this gateway serves.
type Peer struct {
	Cluster string
	// Endpoint is its gateway's underlay address; empty when unknown.
	Endpoint string
	// VPCs shared with it, sorted.
	VPCs []string
	// Pending: its subnets are not routed, for Reason.
	Pending bool
	Reason  string
}

// Desired computes the data plane of this cluster's gateway from the
// objects of its cluster. It is pure:
//
//   - a VPC is served when it has a VNI and at least one local subnet (spec.cluster
//     is this cluster): a router namespace with a bridge per local subnet;
//   - the VPC's subnets owned by other clusters are routed to their owner's
//     gateway (the Gateway named after the owner); while that Gateway is not
//     here yet (or names no usable endpoint) the owner is a Pending peer;
//   - objects being deleted are left out, and so is whatever would make the
//     Spec invalid (a duplicate VNI, a bad or overlapping CIDR: older
//     subnets first), with a Problem saying why, so that one bad object
//     never stops the others from being programmed.
func Desired(in Input) Plan {
	p := Plan{Spec: netplane.Spec{Prefix: in.Prefix, Underlay: in.Endpoint}}
	problem := func(format string, a ...any) { p.Problems = append(p.Problems, fmt.Sprintf(format, a...)) }

	vpcs := map[string]*networkv1alpha1.VPC{}
	for _, v := range in.VPCs {
		if v.DeletionTimestamp == nil {
			vpcs[v.Name] = v
		}
	}
	gateways := map[string]*networkv1alpha1.Gateway{}
	for _, g := range in.Gateways {
		if g.DeletionTimestamp == nil {
			gateways[g.Name] = g
		}
	}
	byVPC := map[string][]*networkv1alpha1.Subnet{}
	local := map[string]bool{} // VPCs with a local subnet
	for _, s := range in.Subnets {
		if s.DeletionTimestamp != nil {
			continue
		}
		byVPC[s.Spec.VPC] = append(byVPC[s.Spec.VPC], s)
		if s.Spec.Cluster == in.Cluster {
			local[s.Spec.VPC] = true
		}
	}

	peers := map[string]*Peer{}
	vnis := map[uint32]string{}
	for _, name := range slices.Sorted(maps.Keys(local)) {
		v, ok := vpcs[name]
		switch {
		case !ok:
			problem("VPC %s of the local subnets is not in this cluster yet", name)
			continue
		case v.Status.VNI <= 0 || v.Status.VNI > maxVNI:
			problem("VPC %s has no VNI yet", name)
			continue
		}
		vni := uint32(v.Status.VNI)
		if other, dup := vnis[vni]; dup {
			problem("VPC %s has VNI %d, as VPC %s does: left out", name, vni, other)
			continue
		}
		nv := netplane.VPC{Name: name, VNI: vni}
		type held struct {
			name string
			cidr netip.Prefix
		}
		var taken []held
		for _, s := range ordered(byVPC[name]) {
			cidr, err := netip.ParsePrefix(s.Spec.CIDR)
			if err != nil || !cidr.Addr().Is4() || cidr.Masked() != cidr || cidr.Bits() > 30 {
				problem("subnet %s: CIDR %q is not an IPv4 network of at most /30: left out", s.Name, s.Spec.CIDR)
				continue
			}
			if i := slices.IndexFunc(taken, func(h held) bool { return h.cidr.Overlaps(cidr) }); i >= 0 {
				problem("subnet %s: CIDR %s overlaps subnet %s (%s) of VPC %s: left out", s.Name, cidr, taken[i].name, taken[i].cidr, name)
				continue
			}
			taken = append(taken, held{s.Name, cidr})
			if s.Spec.Cluster == in.Cluster {
				nv.Subnets = append(nv.Subnets, netplane.Subnet{Name: s.Name, CIDR: cidr})
				p.Subnets = append(p.Subnets, s.Name)
				continue
			}
			peer := peers[s.Spec.Cluster]
			if peer == nil {
				peer = &Peer{Cluster: s.Spec.Cluster}
				peers[s.Spec.Cluster] = peer
			}
			if !slices.Contains(peer.VPCs, name) {
				peer.VPCs = append(peer.VPCs, name)
			}
			endpoint, reason := peerEndpoint(gateways[s.Spec.Cluster], in.Endpoint)
			if reason != "" {
				peer.Pending, peer.Reason = true, reason
				continue
			}
			peer.Endpoint = endpoint.String()
			nv.Remote = append(nv.Remote, netplane.RemoteSubnet{Name: s.Name, CIDR: cidr, Gateway: endpoint})
		}
		if len(nv.Subnets) == 0 {
			continue // every local subnet was left out
		}
		vnis[vni] = name
		p.Spec.VPCs = append(p.Spec.VPCs, nv)
		p.VPCs = append(p.VPCs, name)
	}
	slices.Sort(p.Subnets)
	for _, name := range slices.Sorted(maps.Keys(peers)) {
		peer := peers[name]
		slices.Sort(peer.VPCs)
		p.Peers = append(p.Peers, *peer)
	}
	slices.Sort(p.Problems)
	return p
}

// peerEndpoint returns a peer's gateway address, or why it cannot be used.
func peerEndpoint(g *networkv1alpha1.Gateway, own netip.Addr) (netip.Addr, string) {
	if g == nil {
		return netip.Addr{}, "its Gateway is not known here yet"
	}
	a, err := netip.ParseAddr(g.Spec.Endpoint)
	switch {
	case err != nil || !a.Is4() || !a.IsGlobalUnicast():
		return netip.Addr{}, fmt.Sprintf("its Gateway's endpoint %q is not a unicast IPv4 address", g.Spec.Endpoint)
	case a == own:
		return netip.Addr{}, fmt.Sprintf("its Gateway's endpoint %s is this gateway's own", a)
	}
	return a, ""
}

// ordered returns subnets oldest first, then by name: the order in which
// overlaps are settled (the older one stays).
func ordered(subnets []*networkv1alpha1.Subnet) []*networkv1alpha1.Subnet {
	out := slices.Clone(subnets)
	slices.SortFunc(out, func(a, b *networkv1alpha1.Subnet) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}
