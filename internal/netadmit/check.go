// Package netadmit is the admission check of the network API that a CRD's
// own validation cannot express, because it needs other objects: a Subnet
// must lie inside its VPC, must not overlap another subnet of the same VPC,
// and must name a VPC and an owning cluster that exist. The checks are pure
// functions; Handler serves them as a validating admission webhook, and
// Register installs the webhook's configuration in the API server.
package netadmit

import (
	"fmt"
	"net/netip"
	"sort"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
)

// labelFromParent marks the objects a middle cluster holds from its parent
// (the hub's LabelFromParent).
const labelFromParent = "edge.fornax.io/from-parent"

// CheckSubnet returns why a Subnet may not be created or changed, or nil.
// vpc is the Subnet's VPC (nil: it does not exist); others are every Subnet
// already stored (the one being changed may be among them: it is skipped);
// clusterKnown tells whether the owning cluster is in the tree.
func CheckSubnet(s *networkv1alpha1.Subnet, vpc *networkv1alpha1.VPC, others []networkv1alpha1.Subnet, clusterKnown bool) error {
	cidr, err := netip.ParsePrefix(s.Spec.CIDR)
	if err != nil {
		return fmt.Errorf("subnet %s: cidr %q is not a prefix such as 10.1.1.0/24", s.Name, s.Spec.CIDR)
	}
	if s.Spec.Cluster == "" {
		return fmt.Errorf("subnet %s: spec.cluster must name the cluster that owns it", s.Name)
	}
	if !clusterKnown {
		return fmt.Errorf("subnet %s: cluster %q is not in the tree (see kubectl get edgeclusters)", s.Name, s.Spec.Cluster)
	}
	if vpc == nil {
		return fmt.Errorf("subnet %s: VPC %q not found: create the VPC first", s.Name, s.Spec.VPC)
	}
	if vpc.Labels[labelFromParent] == "true" {
		return fmt.Errorf("subnet %s: VPC %s was created above this cluster: create its subnets where it was created", s.Name, vpc.Name)
	}
	vpcCIDR, err := netip.ParsePrefix(vpc.Spec.CIDR)
	if err != nil {
		return fmt.Errorf("subnet %s: VPC %s has an invalid cidr %q", s.Name, vpc.Name, vpc.Spec.CIDR)
	}
	if !within(cidr, vpcCIDR) {
		return fmt.Errorf("subnet %s: %s is outside VPC %s (%s)", s.Name, cidr, vpc.Name, vpcCIDR)
	}
	var clashes []string
	for _, o := range others {
		if o.Name == s.Name || o.Spec.VPC != s.Spec.VPC {
			continue
		}
		oc, err := netip.ParsePrefix(o.Spec.CIDR)
		if err != nil {
			continue // rejected when it was stored; not this subnet's problem
		}
		if oc.Overlaps(cidr) {
			clashes = append(clashes, fmt.Sprintf("%s (%s, cluster %s)", o.Name, oc, o.Spec.Cluster))
		}
	}
	if len(clashes) > 0 {
		sort.Strings(clashes)
		return fmt.Errorf("subnet %s: %s overlaps subnet %v of VPC %s: subnets of a VPC may not overlap", s.Name, cidr, joinList(clashes), s.Spec.VPC)
	}
	return nil
}

// within reports whether inner lies entirely inside outer.
func within(inner, outer netip.Prefix) bool {
	return inner.Bits() >= outer.Bits() && outer.Contains(inner.Masked().Addr())
}

func joinList(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	out := s[0]
	for _, x := range s[1:] {
		out += ", " + x
	}
	return out
}
