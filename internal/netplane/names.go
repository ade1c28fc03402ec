// Package netplane programs one cluster gateway's share of the inter-cluster
// network on a stock Linux kernel: a router network namespace per VPC (which
// isolates overlapping tenants the way a VRF would), a bridge per local
// subnet holding the subnet's gateway address, kernel VXLAN with the VPC's
// VNI towards the other gateways of the VPC, and L3 routes to their subnets.
// Reconciliation is level-triggered from a desired Spec: applying the same
// Spec twice changes nothing, and whatever the Spec no longer names is removed.
package netplane

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// VXLANPort is the UDP port of the gateways' VXLAN tunnels (IANA's).
const VXLANPort = 4789

// VXLANOverhead is what VXLAN over IPv4 adds to every packet: outer IPv4 (20),
// UDP (8), VXLAN (8) and the inner Ethernet header (14).
const VXLANOverhead = 50

// DefaultPrefix names the router namespaces of a host's gateway. Tests that
// run several simulated clusters on one kernel give each its own prefix.
const DefaultPrefix = "fornax"

// RouterNS is the name (under /var/run/netns) of the router namespace of the
// VPC with the given VNI.
func RouterNS(prefix string, vni uint32) string {
	return fmt.Sprintf("%s-vpc-%d", prefix, vni)
}

// BridgeName is the name of a local subnet's bridge inside its router
// namespace: at most 15 bytes (IFNAMSIZ-1), stable for a subnet name.
func BridgeName(subnet string) string {
	return "br-" + shortHash(subnet, 12)
}

// VXLANName is the name of a VPC's VXLAN device inside its router namespace.
func VXLANName(vni uint32) string {
	return fmt.Sprintf("vx-%d", vni)
}

// GatewayAddr is a subnet's gateway address, held by its bridge in the router
// namespace: the first address after the network address.
func GatewayAddr(cidr netip.Prefix) netip.Addr {
	return cidr.Masked().Addr().Next()
}

// TunnelMAC is the MAC address of a gateway's VXLAN device: derived from its
// underlay IPv4 address so that peers need no extra fact to reach it.
// Locally administered, unicast.
func TunnelMAC(underlay netip.Addr) net.HardwareAddr {
	a := underlay.As4()
	return net.HardwareAddr{0x02, 0x46, a[0], a[1], a[2], a[3]}
}

func shortHash(s string, n int) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])[:n]
}

// ParseRouterNS is the inverse of RouterNS: it reports the VNI of a router
// namespace name made with prefix. Only the exact form RouterNS produces is
// accepted, so that a prefix never claims another prefix's namespaces (with
// prefix "a", "a-b-vpc-1" and "a-vpc-01" are not ours).
func ParseRouterNS(prefix, name string) (vni uint32, ok bool) {
	rest, found := strings.CutPrefix(name, prefix+"-vpc-")
	if !found || rest == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 32)
	if err != nil || RouterNS(prefix, uint32(n)) != name {
		return 0, false
	}
	return uint32(n), true
}

// bridgeNamePrefix starts the name of every subnet bridge (BridgeName):
// Apply removes the bridges with it that the Spec no longer names.
const bridgeNamePrefix = "br-"

// HostVethName is the name of the router-namespace end of a pod's veth pair:
// at most 15 bytes, stable for the pod's container and interface (the pair
// CNI identifies an attachment by), so DEL finds what ADD made.
func HostVethName(containerID, ifName string) string {
	return "fx" + shortHash(containerID+"/"+ifName, 12)
}

// BridgeMAC is the MAC address of a local subnet's bridge: fixed, so that
// the kernel never changes it as pods come and go (a bridge without one
// takes its lowest port's, and pods that cached the gateway's MAC would lose
// it with that pod). Locally administered, unicast.
func BridgeMAC(vni uint32, subnet string) net.HardwareAddr {
	h := sha256.Sum256(fmt.Appendf(nil, "%d/%s", vni, subnet))
	return net.HardwareAddr{0x02, h[0], h[1], h[2], h[3], h[4]}
}
