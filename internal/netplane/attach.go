package netplane

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Pod is one network interface of a pod on a local subnet, as the CNI
// plugin knows it.
type Pod struct {
	// ContainerID and IfName identify the attachment (CNI's ADD and DEL
	// get both); the router end of the veth is named after them.
	ContainerID string
	IfName      string
	// NetNSPath is the pod's network namespace (CNI_NETNS).
	NetNSPath string
	// Prefix and VNI name the router namespace; "" is DefaultPrefix.
	Prefix string
	VNI    uint32
	// Subnet is the name of the local subnet (Subnet.Name) whose bridge the
	// pod joins.
	Subnet string
	// Addr is the pod's address with the subnet's prefix length.
	Addr netip.Prefix
	// Gateway is the pod's default gateway; the zero Addr means the
	// subnet's (GatewayAddr).
	Gateway netip.Addr
}

// Attachment is what AttachPod made.
type Attachment struct {
	// HostVeth is the router-namespace end of the pod's veth pair.
	HostVeth string
	// PodMAC is the MAC address of the pod's interface.
	PodMAC net.HardwareAddr
	// MTU is the MTU of both ends: the bridge's.
	MTU int
}

func (p Pod) prefix() string {
	if p.Prefix == "" {
		return DefaultPrefix
	}
	return p.Prefix
}

func (p Pod) gateway() netip.Addr {
	if p.Gateway.IsValid() {
		return p.Gateway
	}
	return GatewayAddr(p.Addr)
}

func (p Pod) String() string {
	return fmt.Sprintf("pod interface %s of container %.12s", p.IfName, p.ContainerID)
}

// validateIDs checks what DetachPod needs.
func (p Pod) validateIDs() error {
	switch {
	case p.ContainerID == "":
		return errors.New("the container ID is empty")
	case p.IfName == "" || len(p.IfName) > 15 || p.IfName == "." || p.IfName == "..":
		return fmt.Errorf("interface name %q is not a valid Linux interface name (1 to 15 bytes)", p.IfName)
	case p.VNI == 0 || p.VNI > maxVNI:
		return fmt.Errorf("VNI %d is out of range 1 to %d", p.VNI, maxVNI)
	}
	return validatePrefix(p.Prefix)
}

func (p Pod) validate() error {
	if err := p.validateIDs(); err != nil {
		return err
	}
	subnet := p.Addr.Masked()
	switch {
	case p.NetNSPath == "":
		return errors.New("the network namespace path is empty")
	case p.Subnet == "":
		return errors.New("the subnet name is empty")
	case !p.Addr.IsValid() || !p.Addr.Addr().Is4() || p.Addr.Bits() > 30:
		return fmt.Errorf("address %v is not an IPv4 address with a prefix length of at most 30", p.Addr)
	case p.Addr.Addr() == subnet.Addr():
		return fmt.Errorf("address %v is its subnet's network address", p.Addr)
	case p.Addr.Addr() == lastAddr(subnet):
		return fmt.Errorf("address %v is its subnet's broadcast address", p.Addr)
	case !subnet.Contains(p.gateway()):
		return fmt.Errorf("gateway %v is outside the pod's subnet %v", p.gateway(), subnet)
	case p.Addr.Addr() == p.gateway():
		return fmt.Errorf("address %v is the subnet's gateway", p.Addr)
	}
	return nil
}

// lastAddr is the broadcast address of an IPv4 network.
func lastAddr(n netip.Prefix) netip.Addr {
	a := n.Masked().Addr().As4()
	for i := n.Bits(); i < 32; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(a)
}

// wiring holds what a pod's attachment spans: the router namespace with the
// subnet's bridge, and the pod's namespace.
type wiring struct {
	p        Pod
	hostVeth string
	routerNS netns.NsHandle
	router   *netlink.Handle
	bridge   netlink.Link
	podNS    netns.NsHandle
	pod      *netlink.Handle
}

// openWiring opens the router namespace, finds the subnet's bridge and
// opens the pod's namespace. The caller closes it.
func openWiring(p Pod) (*wiring, error) {
	w := &wiring{p: p, hostVeth: HostVethName(p.ContainerID, p.IfName), routerNS: netns.None(), podNS: netns.None()}
	ok := false
	defer func() {
		if !ok {
			w.close()
		}
	}()
	name := RouterNS(p.prefix(), p.VNI)
	var err error
	if w.routerNS, err = openNamedNS(name); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("router namespace %s of VNI %d is missing: the gateway has not applied this VPC on this host yet: %w", name, p.VNI, err)
		}
		return nil, err
	}
	if w.router, err = netlink.NewHandleAt(w.routerNS); err != nil {
		return nil, fmt.Errorf("opening netlink in %s: %w", name, err)
	}
	br := BridgeName(p.Subnet)
	if w.bridge, err = w.router.LinkByName(br); err != nil {
		return nil, fmt.Errorf("finding bridge %s of subnet %q in %s (has the gateway applied the subnet on this host?): %w", br, p.Subnet, name, err)
	}
	addrs, err := w.router.AddrList(w.bridge, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("listing the addresses of bridge %s in %s: %w", br, name, err)
	}
	inSubnet := false
	for _, a := range addrs {
		if prefixOf(a.IPNet).Masked() == p.Addr.Masked() {
			inSubnet = true
		}
	}
	if !inSubnet {
		return nil, fmt.Errorf("address %v is not in subnet %q: bridge %s in %s has no address in %v", p.Addr, p.Subnet, br, name, p.Addr.Masked())
	}
	if w.podNS, err = netns.GetFromPath(p.NetNSPath); err != nil {
		return nil, fmt.Errorf("opening the pod's network namespace %s: %w", p.NetNSPath, err)
	}
	if w.pod, err = netlink.NewHandleAt(w.podNS); err != nil {
		return nil, fmt.Errorf("opening netlink in the pod's network namespace %s: %w", p.NetNSPath, err)
	}
	ok = true
	return w, nil
}

func (w *wiring) close() {
	if w.pod != nil {
		w.pod.Close()
	}
	if w.podNS.IsOpen() {
		_ = w.podNS.Close()
	}
	if w.router != nil {
		w.router.Close()
	}
	if w.routerNS.IsOpen() {
		_ = w.routerNS.Close()
	}
}

// ends finds both ends of the pod's veth pair; a nil link is missing.
func (w *wiring) ends() (host, pod netlink.Link, err error) {
	var notFound netlink.LinkNotFoundError
	host, err = w.router.LinkByName(w.hostVeth)
	if errors.As(err, &notFound) {
		host, err = nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("finding veth %s in the router namespace: %w", w.hostVeth, err)
	}
	pod, err = w.pod.LinkByName(w.p.IfName)
	if errors.As(err, &notFound) {
		pod, err = nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("finding %s in %s: %w", w.p.IfName, w.p.NetNSPath, err)
	}
	return host, pod, nil
}

// peers reports whether host and pod are the two ends of one veth pair.
func peers(host, pod netlink.Link) bool {
	_, hv := host.(*netlink.Veth)
	_, pv := pod.(*netlink.Veth)
	return hv && pv && host.Attrs().ParentIndex == pod.Attrs().Index && pod.Attrs().ParentIndex == host.Attrs().Index
}

func (w *wiring) hasAddr(pod netlink.Link) (bool, []netip.Prefix, error) {
	addrs, err := w.pod.AddrList(pod, netlink.FAMILY_V4)
	if err != nil {
		return false, nil, fmt.Errorf("listing the addresses of %s in %s: %w", w.p.IfName, w.p.NetNSPath, err)
	}
	var have []netip.Prefix
	found := false
	for _, a := range addrs {
		pa := prefixOf(a.IPNet)
		have = append(have, pa)
		found = found || pa == w.p.Addr
	}
	return found, have, nil
}

// AttachPod wires a pod to its subnet: a veth pair with one end named
// p.IfName in the pod's namespace, holding p.Addr, with a default route via
// the gateway, and the other end (HostVethName) on the subnet's bridge in the
// router namespace; both with the bridge's MTU. It is idempotent: when the
// pod's interface already exists as this attachment with p.Addr, it makes
// sure the rest is in place and returns the same Attachment. When it fails
// it leaves no veth behind.
func AttachPod(ctx context.Context, p Pod) (Attachment, error) {
	if err := p.validate(); err != nil {
		return Attachment{}, fmt.Errorf("attaching %v: %w", p, err)
	}
	w, err := openWiring(p)
	if err != nil {
		return Attachment{}, fmt.Errorf("attaching %v: %w", p, err)
	}
	defer w.close()
	a, err := w.attach(ctx)
	if err != nil {
		return Attachment{}, fmt.Errorf("attaching %v to subnet %q: %w", p, p.Subnet, err)
	}
	return a, nil
}

func (w *wiring) attach(ctx context.Context) (Attachment, error) {
	host, pod, err := w.ends()
	if err != nil {
		return Attachment{}, err
	}
	if pod != nil {
		if host == nil || !peers(host, pod) {
			return Attachment{}, fmt.Errorf("%s already exists in %s and is not the peer of %s in the router namespace", w.p.IfName, w.p.NetNSPath, w.hostVeth)
		}
		ok, have, err := w.hasAddr(pod)
		if err != nil {
			return Attachment{}, err
		}
		if !ok {
			return Attachment{}, fmt.Errorf("%s already exists in %s with addresses %v, not %v", w.p.IfName, w.p.NetNSPath, have, w.p.Addr)
		}
		if err := w.complete(ctx, host, pod, false); err != nil {
			return Attachment{}, err
		}
		return w.attachment()
	}
	if host != nil {
		// Left by an attempt that failed half way (its pod end is gone).
		if err := w.router.LinkDel(host); err != nil {
			return Attachment{}, fmt.Errorf("deleting the leftover veth %s: %w", w.hostVeth, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return Attachment{}, err
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: w.hostVeth, MTU: w.bridge.Attrs().MTU},
		PeerName:      w.p.IfName,
		PeerNamespace: netlink.NsFd(w.podNS),
	}
	if err := w.router.LinkAdd(veth); err != nil {
		return Attachment{}, fmt.Errorf("creating veth pair %s (router) / %s (pod): %w", w.hostVeth, w.p.IfName, err)
	}
	if host, pod, err = w.ends(); err == nil && (host == nil || pod == nil) {
		err = fmt.Errorf("veth pair %s / %s vanished after it was created", w.hostVeth, w.p.IfName)
	}
	if err == nil {
		err = w.complete(ctx, host, pod, true)
	}
	var a Attachment
	if err == nil {
		a, err = w.attachment()
	}
	if err != nil {
		if l, lerr := w.router.LinkByName(w.hostVeth); lerr == nil {
			_ = w.router.LinkDel(l) // takes the pod end with it
		}
		return Attachment{}, err
	}
	return a, nil
}

// complete puts the router end on the bridge and up, and gives the pod end
// its address (when addAddr), state and default route.
func (w *wiring) complete(ctx context.Context, host, pod netlink.Link, addAddr bool) error {
	if host.Attrs().MasterIndex != w.bridge.Attrs().Index {
		if err := w.router.LinkSetMaster(host, w.bridge); err != nil {
			return fmt.Errorf("putting %s on bridge %s: %w", w.hostVeth, w.bridge.Attrs().Name, err)
		}
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		if err := w.router.LinkSetUp(host); err != nil {
			return fmt.Errorf("setting %s up: %w", w.hostVeth, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if lo, err := w.pod.LinkByName("lo"); err != nil {
		return fmt.Errorf("finding the loopback in %s: %w", w.p.NetNSPath, err)
	} else if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := w.pod.LinkSetUp(lo); err != nil {
			return fmt.Errorf("setting the loopback up in %s: %w", w.p.NetNSPath, err)
		}
	}
	if addAddr {
		if err := w.pod.AddrAdd(pod, &netlink.Addr{IPNet: ipNetOf(w.p.Addr)}); err != nil {
			return fmt.Errorf("adding address %v to %s: %w", w.p.Addr, w.p.IfName, err)
		}
	}
	if pod.Attrs().Flags&net.FlagUp == 0 {
		if err := w.pod.LinkSetUp(pod); err != nil {
			return fmt.Errorf("setting %s up in %s: %w", w.p.IfName, w.p.NetNSPath, err)
		}
	}
	ok, err := w.hasDefaultRoute(pod)
	if err != nil || ok {
		return err
	}
	gw := w.p.gateway()
	if err := w.pod.RouteReplace(&netlink.Route{LinkIndex: pod.Attrs().Index, Gw: gw.AsSlice(), Scope: netlink.SCOPE_UNIVERSE}); err != nil {
		return fmt.Errorf("adding the default route via %v to %s in %s: %w", gw, w.p.IfName, w.p.NetNSPath, err)
	}
	return nil
}

func (w *wiring) hasDefaultRoute(pod netlink.Link) (bool, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return w.pod.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: pod.Attrs().Index}, netlink.RT_FILTER_OIF)
	})
	if err != nil {
		return false, fmt.Errorf("listing the routes through %s in %s: %w", w.p.IfName, w.p.NetNSPath, err)
	}
	for _, r := range routes {
		if (r.Dst == nil || prefixOf(r.Dst).Bits() == 0) && addrOf(r.Gw) == w.p.gateway() {
			return true, nil
		}
	}
	return false, nil
}

func (w *wiring) attachment() (Attachment, error) {
	pod, err := w.pod.LinkByName(w.p.IfName)
	if err != nil {
		return Attachment{}, fmt.Errorf("finding %s in %s: %w", w.p.IfName, w.p.NetNSPath, err)
	}
	return Attachment{HostVeth: w.hostVeth, PodMAC: pod.Attrs().HardwareAddr, MTU: pod.Attrs().MTU}, nil
}

// DetachPod removes a pod's veth pair by deleting its router end. A pair,
// or router namespace, that is already gone is not an error: CNI's DEL may
// come more than once, and after the pod's namespace is gone.
func DetachPod(ctx context.Context, p Pod) error {
	if err := p.validateIDs(); err != nil {
		return fmt.Errorf("detaching %v: %w", p, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	name := RouterNS(p.prefix(), p.VNI)
	ns, err := openNamedNS(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detaching %v: %w", p, err)
	}
	defer func() { _ = ns.Close() }()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("detaching %v: opening netlink in %s: %w", p, name, err)
	}
	defer h.Close()
	veth := HostVethName(p.ContainerID, p.IfName)
	l, err := h.LinkByName(veth)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detaching %v: finding veth %s in %s: %w", p, veth, name, err)
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("detaching %v: deleting veth %s in %s: %w", p, veth, name, err)
	}
	return nil
}

// CheckPod verifies a pod's attachment as AttachPod makes it, and says
// everything that is wrong: a missing interface or veth end, ends that are
// not peers, a router end not on the subnet's bridge, an end that is down,
// a missing address, an MTU other than the bridge's, no default route via
// the gateway.
func CheckPod(ctx context.Context, p Pod) error {
	if err := p.validate(); err != nil {
		return fmt.Errorf("checking %v: %w", p, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w, err := openWiring(p)
	if err != nil {
		return fmt.Errorf("checking %v: %w", p, err)
	}
	defer w.close()
	if err := w.check(); err != nil {
		return fmt.Errorf("checking %v: %w", p, err)
	}
	return nil
}

func (w *wiring) check() error {
	host, pod, err := w.ends()
	if err != nil {
		return err
	}
	switch {
	case pod == nil && host == nil:
		return fmt.Errorf("%s is missing in %s, and veth %s in the router namespace", w.p.IfName, w.p.NetNSPath, w.hostVeth)
	case pod == nil:
		return fmt.Errorf("%s is missing in %s", w.p.IfName, w.p.NetNSPath)
	case host == nil:
		return fmt.Errorf("veth %s is missing in the router namespace", w.hostVeth)
	case !peers(host, pod):
		return fmt.Errorf("%s in %s is not the peer of veth %s in the router namespace", w.p.IfName, w.p.NetNSPath, w.hostVeth)
	}
	var errs []error
	br, mtu := w.bridge.Attrs().Name, w.bridge.Attrs().MTU
	if host.Attrs().MasterIndex != w.bridge.Attrs().Index {
		errs = append(errs, fmt.Errorf("veth %s is not on bridge %s", w.hostVeth, br))
	}
	for _, end := range []struct {
		what string
		l    netlink.Link
	}{{"veth " + w.hostVeth + " in the router namespace", host}, {w.p.IfName + " in " + w.p.NetNSPath, pod}} {
		if end.l.Attrs().Flags&net.FlagUp == 0 {
			errs = append(errs, fmt.Errorf("%s is down", end.what))
		}
		if end.l.Attrs().MTU != mtu {
			errs = append(errs, fmt.Errorf("%s has MTU %d, bridge %s has %d", end.what, end.l.Attrs().MTU, br, mtu))
		}
	}
	if ok, have, err := w.hasAddr(pod); err != nil {
		errs = append(errs, err)
	} else if !ok {
		errs = append(errs, fmt.Errorf("%s in %s has addresses %v, not %v", w.p.IfName, w.p.NetNSPath, have, w.p.Addr))
	}
	if ok, err := w.hasDefaultRoute(pod); err != nil {
		errs = append(errs, err)
	} else if !ok {
		errs = append(errs, fmt.Errorf("%s has no default route via %v on %s", w.p.NetNSPath, w.p.gateway(), w.p.IfName))
	}
	return errors.Join(errs...)
}
