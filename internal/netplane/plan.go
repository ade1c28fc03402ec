package netplane

import (
	"net/netip"
	"slices"
)

// This file holds the pure half of Apply: given what was observed and what
// the Spec wants, what to create and what to remove. The netlink half
// (reconcile.go) only observes and carries the plan out.

// diff returns the elements of want missing from have (to add) and those of
// have missing from want (to remove), each in its input order.
func diff[T comparable](have, want []T) (add, remove []T) {
	for _, w := range want {
		if !slices.Contains(have, w) && !slices.Contains(add, w) {
			add = append(add, w)
		}
	}
	for _, h := range have {
		if !slices.Contains(want, h) && !slices.Contains(remove, h) {
			remove = append(remove, h)
		}
	}
	return add, remove
}

// planNamespaces says which router namespaces to create (by VNI) and which
// to remove (by name), given the named namespaces that exist. Names that are
// not router namespaces of prefix are never removed.
func planNamespaces(prefix string, existing []string, want []uint32) (create []uint32, remove []string) {
	var have []uint32
	for _, name := range existing {
		if vni, ok := ParseRouterNS(prefix, name); ok {
			have = append(have, vni)
		}
	}
	create, gone := diff(have, want)
	for _, vni := range gone {
		remove = append(remove, RouterNS(prefix, vni))
	}
	return create, remove
}

// vxlanAttrs are the attributes of a VPC's VXLAN device that can only be set
// when it is created.
type vxlanAttrs struct {
	VNI      uint32
	Local    netip.Addr
	Port     int
	Learning bool
	// LinkNetNSID is the id, in the router namespace, of the namespace
	// holding the device's UDP socket; -1 when it is the router namespace.
	LinkNetNSID int
}

// vxlanProblem says why an existing VXLAN device cannot be kept and must be
// made again, or "" if it can (MTU, MAC address and state are fixed in
// place). hostNSID is the id of the host (underlay) namespace as seen from
// the router namespace, -1 if it has none: then no device can be right.
func vxlanProblem(have vxlanAttrs, want vxlanAttrs, hostNSID int) string {
	switch {
	case have.VNI != want.VNI:
		return "it has the wrong VNI"
	case have.Local != want.Local:
		return "it has the wrong local address"
	case have.Port != want.Port:
		return "it has the wrong UDP port"
	case have.Learning != want.Learning:
		return "it learns addresses"
	case have.LinkNetNSID < 0 || have.LinkNetNSID != hostNSID:
		return "its UDP socket is not in the underlay namespace"
	}
	return ""
}

// route is a route to a remote subnet on a router's VXLAN device.
type route struct {
	Dst      netip.Prefix
	Via      netip.Addr
	OnLink   bool
	Priority int
}

// neighbour is an ARP entry on a router's VXLAN device.
type neighbour struct {
	IP        netip.Addr
	MAC       string
	Permanent bool
}

// fdbEntry sends the frames for a MAC address to a remote VTEP.
type fdbEntry struct {
	MAC string
	Dst netip.Addr
}

// remoteState is what a router's VXLAN device carries for remote subnets.
type remoteState struct {
	Routes     []route
	Neighbours []neighbour
	FDB        []fdbEntry
}

// wantRemote is the remote state a VPC asks for: for each remote subnet, a
// route through the subnet's gateway address, which resolves to the owning
// gateway's tunnel MAC, which the FDB sends to that gateway's underlay
// address (one FDB entry per gateway, however many subnets it owns).
func wantRemote(v VPC) remoteState {
	var s remoteState
	for _, rs := range v.Remote {
		gw, mac := GatewayAddr(rs.CIDR), TunnelMAC(rs.Gateway).String()
		s.Routes = append(s.Routes, route{Dst: rs.CIDR.Masked(), Via: gw, OnLink: true})
		s.Neighbours = append(s.Neighbours, neighbour{IP: gw, MAC: mac, Permanent: true})
		if e := (fdbEntry{MAC: mac, Dst: rs.Gateway}); !slices.Contains(s.FDB, e) {
			s.FDB = append(s.FDB, e)
		}
	}
	return s
}

// remotePlan is what to change on a VXLAN device. Removals go first: a
// neighbour or route that changes is removed in its old form, then added.
type remotePlan struct {
	AddRoutes, RemoveRoutes         []route
	AddNeighbours, RemoveNeighbours []neighbour
	AddFDB, RemoveFDB               []fdbEntry
}

// empty reports whether the plan changes nothing.
func (p remotePlan) empty() bool {
	return len(p.AddRoutes)+len(p.RemoveRoutes)+len(p.AddNeighbours)+len(p.RemoveNeighbours)+len(p.AddFDB)+len(p.RemoveFDB) == 0
}

// planRemote compares the observed remote state of a VXLAN device with the
// wanted one. Entries the kernel made (resolving neighbours: not permanent)
// are left to age unless they stand in the way of a wanted one, which
// replaces them.
func planRemote(have, want remoteState) remotePlan {
	var p remotePlan
	p.AddRoutes, p.RemoveRoutes = diff(have.Routes, want.Routes)
	var removeNeighbours []neighbour
	p.AddNeighbours, removeNeighbours = diff(have.Neighbours, want.Neighbours)
	for _, n := range removeNeighbours {
		if n.Permanent {
			p.RemoveNeighbours = append(p.RemoveNeighbours, n)
		}
	}
	p.AddFDB, p.RemoveFDB = diff(have.FDB, want.FDB)
	return p
}
