package netplane

import (
	"errors"
	"fmt"
	"net/netip"
)

// Spec is everything one gateway's data plane should be: Apply makes the
// host match it and removes what it no longer names.
type Spec struct {
	// Prefix names the router namespaces (RouterNS); "" means DefaultPrefix.
	// Apply and Teardown touch only namespaces with this prefix.
	Prefix string
	// Underlay is this gateway's VTEP address: an IPv4 address that must be
	// configured on a link of the host namespace. Peers send VXLAN to it.
	Underlay netip.Addr
	// MTU is the underlay's MTU; 0 means the MTU of the host link holding
	// Underlay. Bridges, VXLAN devices and pods get MTU-VXLANOverhead.
	MTU int
	// VPCs are the VPCs this cluster takes part in, one router namespace each.
	VPCs []VPC
}

// VPC is one tenant network as this cluster sees it.
type VPC struct {
	Name string
	// VNI is the VXLAN network identifier of the VPC, the same at every
	// gateway: 1 to 2^24-1, unique within a Spec.
	VNI uint32
	// Subnets are the VPC's subnets owned by this cluster: a bridge each.
	Subnets []Subnet
	// Remote are the VPC's subnets owned by other clusters: a route each,
	// through the owning cluster's gateway.
	Remote []RemoteSubnet
}

// Subnet is a local subnet of a VPC.
type Subnet struct {
	// Name identifies the subnet within its VPC; pods name it (Pod.Subnet).
	Name string
	// CIDR is the subnet's IPv4 network (e.g. 10.1.2.0/24); its first
	// address is the gateway (GatewayAddr).
	CIDR netip.Prefix
}

// RemoteSubnet is a subnet of the VPC owned by another cluster.
type RemoteSubnet struct {
	Name string
	CIDR netip.Prefix
	// Gateway is the underlay address of the owning cluster's gateway.
	Gateway netip.Addr
}

// maxVNI is the largest VXLAN network identifier (24 bits).
const maxVNI = 1<<24 - 1

// minMTU is the smallest underlay MTU that leaves IPv4's minimum (68) for
// the overlay.
const minMTU = 68 + VXLANOverhead

// prefix is the Spec's namespace prefix with the default applied.
func (s Spec) prefix() string {
	if s.Prefix == "" {
		return DefaultPrefix
	}
	return s.Prefix
}

// Validate reports every way s cannot be applied: an underlay that is not a
// unicast IPv4 address, an MTU out of range, a bad prefix, empty or
// duplicate names, duplicate or out-of-range VNIs, CIDRs that are not IPv4
// network addresses or that overlap within a VPC (local and remote subnets
// together). VPCs of different VNIs may overlap: they are isolated.
func Validate(s Spec) error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := validatePrefix(s.Prefix); err != nil {
		errs = append(errs, err)
	}
	if !s.Underlay.Is4() || !s.Underlay.IsGlobalUnicast() {
		add("underlay address %v is not a unicast IPv4 address", s.Underlay)
	}
	if s.MTU != 0 && (s.MTU < minMTU || s.MTU > 65535) {
		add("MTU %d is out of range: use 0 (the underlay link's) or %d to 65535", s.MTU, minMTU)
	}
	vnis := map[uint32]string{}
	names := map[string]bool{}
	for i, v := range s.VPCs {
		what := fmt.Sprintf("VPC %d %q", i, v.Name)
		if v.Name == "" {
			add("%s: the name is empty", what)
		} else if names[v.Name] {
			add("%s: the name is used by another VPC", what)
		}
		names[v.Name] = true
		if v.VNI == 0 || v.VNI > maxVNI {
			add("%s: VNI %d is out of range 1 to %d", what, v.VNI, maxVNI)
		} else if other, dup := vnis[v.VNI]; dup {
			add("%s: VNI %d is also VPC %q's", what, v.VNI, other)
		}
		vnis[v.VNI] = v.Name
		errs = append(errs, validateSubnets(what, s.Underlay, v)...)
	}
	return errors.Join(errs...)
}

func validatePrefix(p string) error {
	if p == "" {
		return nil
	}
	for _, c := range p {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("namespace prefix %q may only hold letters, digits, '-', '_' and '.'", p)
		}
	}
	if len(RouterNS(p, maxVNI)) > 255 {
		return fmt.Errorf("namespace prefix %q is too long for a file name", p)
	}
	return nil
}

// validateSubnets checks the local and remote subnets of a VPC together.
func validateSubnets(vpc string, underlay netip.Addr, v VPC) []error {
	type subnet struct {
		what string
		cidr netip.Prefix
	}
	var (
		errs  []error
		seen  []subnet
		names = map[string]bool{}
	)
	check := func(kind, name string, cidr netip.Prefix) {
		what := fmt.Sprintf("%s: %s subnet %q", vpc, kind, name)
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("%s: the name is empty", what))
		case names[name]:
			errs = append(errs, fmt.Errorf("%s: the name is used by another subnet of the VPC", what))
		}
		names[name] = true
		switch {
		case !cidr.IsValid() || !cidr.Addr().Is4():
			errs = append(errs, fmt.Errorf("%s: CIDR %v is not an IPv4 network", what, cidr))
			return
		case cidr.Masked() != cidr:
			errs = append(errs, fmt.Errorf("%s: CIDR %v is not a network address (did you mean %v?)", what, cidr, cidr.Masked()))
			return
		case cidr.Bits() > 30:
			errs = append(errs, fmt.Errorf("%s: CIDR %v leaves no room for a gateway and a pod (at most /30)", what, cidr))
			return
		}
		for _, o := range seen {
			if o.cidr.Overlaps(cidr) {
				errs = append(errs, fmt.Errorf("%s: CIDR %v overlaps %s (%v)", what, cidr, o.what, o.cidr))
			}
		}
		seen = append(seen, subnet{fmt.Sprintf("%s subnet %q", kind, name), cidr})
	}
	for _, sn := range v.Subnets {
		check("local", sn.Name, sn.CIDR)
	}
	for _, rs := range v.Remote {
		check("remote", rs.Name, rs.CIDR)
		switch {
		case !rs.Gateway.Is4() || !rs.Gateway.IsGlobalUnicast():
			errs = append(errs, fmt.Errorf("%s: remote subnet %q: gateway %v is not a unicast IPv4 address", vpc, rs.Name, rs.Gateway))
		case rs.Gateway == underlay:
			errs = append(errs, fmt.Errorf("%s: remote subnet %q: gateway %v is this gateway's own underlay address: list the subnet as local", vpc, rs.Name, rs.Gateway))
		}
	}
	return errs
}

// String names a Spec's VPC for errors and change descriptions.
func (v VPC) String() string {
	return fmt.Sprintf("VPC %q (VNI %d)", v.Name, v.VNI)
}
