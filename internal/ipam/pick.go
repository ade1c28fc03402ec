package ipam

import (
	"fmt"
	"net/netip"

	"github.com/fornax-edge/fornax/internal/netplane"
)

// MaxBits is the longest prefix a pool accepts: a /30 leaves one address
// besides the network address, the gateway and the broadcast address.
const MaxBits = 30

// checkCIDR says why cidr cannot be a pool's range, or nil.
func checkCIDR(cidr netip.Prefix) error {
	switch {
	case !cidr.IsValid():
		return fmt.Errorf("invalid CIDR %v", cidr)
	case !cidr.Addr().Is4():
		return fmt.Errorf("CIDR %s is not IPv4", cidr)
	case cidr != cidr.Masked():
		return fmt.Errorf("CIDR %s is not a network address (want %s)", cidr, cidr.Masked())
	case cidr.Bits() > MaxBits:
		return fmt.Errorf("CIDR %s leaves no address for pods: the prefix length must be at most %d", cidr, MaxBits)
	}
	return nil
}

// usableRange is the first and last address of cidr a pod may hold: every
// address but the network address, the gateway (netplane.GatewayAddr, the
// first after the network address) and the broadcast address. cidr passed
// checkCIDR.
func usableRange(cidr netip.Prefix) (first, last netip.Addr) {
	first = netplane.GatewayAddr(cidr).Next()
	a := cidr.Addr().As4()
	host := uint32(1)<<(32-cidr.Bits()) - 1
	n := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	broadcast := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	return first, broadcast.Prev()
}

// usableCount is how many addresses of cidr pods may hold.
func usableCount(cidr netip.Prefix) int {
	return 1<<(32-cidr.Bits()) - 3
}

// usable reports whether a pod may hold addr in cidr.
func usable(cidr netip.Prefix, addr netip.Addr) bool {
	first, last := usableRange(cidr)
	return addr.Is4() && first.Compare(addr) <= 0 && addr.Compare(last) <= 0
}

// next picks the address to allocate in cidr: the first one after last
// that is not inUse, wrapping around the usable range, so that an address
// just released is the last to be handed out again (a peer that still
// holds it in a cache or a connection sees it go silent rather than reach
// a stranger). An invalid last, or one outside the usable range, starts
// the search at the first usable address. It reports false when every
// usable address is in use.
func next(cidr netip.Prefix, inUse func(netip.Addr) bool, last netip.Addr) (netip.Addr, bool) {
	first, end := usableRange(cidr)
	a := first
	if last.IsValid() && usable(cidr, last) && last != end {
		a = last.Next()
	}
	for range usableCount(cidr) {
		if !inUse(a) {
			return a, true
		}
		if a == end {
			a = first
		} else {
			a = a.Next()
		}
	}
	return netip.Addr{}, false
}
