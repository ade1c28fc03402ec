package netplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Reconciler makes a host's router namespaces match a Spec. It keeps no
// state between calls: everything is observed again on every Apply, so a
// new Reconciler after a restart carries on where the last one stopped.
type Reconciler struct {
	// host is the underlay namespace: VXLAN sockets live in it.
	host     netns.NsHandle
	ownsHost bool

	// mu serialises Apply and Teardown.
	mu sync.Mutex
}

// New returns a Reconciler for the host (underlay) namespace host, which
// the caller keeps open while it uses the Reconciler and closes afterwards.
func New(host netns.NsHandle) *Reconciler {
	return &Reconciler{host: host}
}

// NewForCurrent returns a Reconciler for the process's own network
// namespace; Close releases it.
func NewForCurrent() (*Reconciler, error) {
	h, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("opening the process's network namespace: %w", err)
	}
	return &Reconciler{host: h, ownsHost: true}, nil
}

// Close releases the host namespace if NewForCurrent opened it.
func (r *Reconciler) Close() error {
	if r.ownsHost && r.host.IsOpen() {
		return r.host.Close()
	}
	return nil
}

// Result tells what an Apply changed.
type Result struct {
	// Changes describes each change made, in order; none when the host
	// already matched the Spec.
	Changes []string
}

// Changed reports whether Apply changed anything.
func (r Result) Changed() bool { return len(r.Changes) > 0 }

func (r *Result) add(format string, a ...any) {
	r.Changes = append(r.Changes, fmt.Sprintf(format, a...))
}

// Apply makes the host match s, from whatever state it is in: it creates
// what is missing, fixes what differs and removes what s no longer names
// among the router namespaces with s's prefix (namespaces without it are
// never touched). It carries on with the other VPCs when one fails, and
// returns every failure. The Result lists the changes it made, even when it
// fails part way.
func (r *Reconciler) Apply(ctx context.Context, s Spec) (Result, error) {
	var res Result
	if err := Validate(s); err != nil {
		return res, fmt.Errorf("invalid network spec: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	host, err := netlink.NewHandleAt(r.host)
	if err != nil {
		return res, fmt.Errorf("opening netlink in the host namespace: %w", err)
	}
	defer host.Close()
	underlayMTU, err := linkMTUOf(host, s.Underlay)
	if err != nil {
		return res, err
	}
	if s.MTU != 0 {
		underlayMTU = s.MTU
	}
	if underlayMTU < minMTU {
		return res, fmt.Errorf("the underlay MTU %d leaves less than 68 bytes for the overlay: raise it, or set Spec.MTU", underlayMTU)
	}

	prefix := s.prefix()
	existing, err := listNamedNS()
	if err != nil {
		return res, err
	}
	var vnis []uint32
	for _, v := range s.VPCs {
		vnis = append(vnis, v.VNI)
	}
	_, remove := planNamespaces(prefix, existing, vnis)
	var errs []error
	for _, name := range remove {
		if err := removeRouterNS(name); err != nil {
			errs = append(errs, err)
			continue
		}
		res.add("removed router namespace %s", name)
	}
	for _, v := range s.VPCs {
		if err := ctx.Err(); err != nil {
			return res, errors.Join(append(errs, err)...)
		}
		rv := routerVPC{
			vpc:      v,
			ns:       RouterNS(prefix, v.VNI),
			underlay: s.Underlay,
			mtu:      underlayMTU - VXLANOverhead,
			res:      &res,
		}
		if err := r.applyVPC(ctx, rv); err != nil {
			errs = append(errs, fmt.Errorf("applying %v in namespace %s: %w", v, rv.ns, err))
		}
	}
	return res, errors.Join(errs...)
}

// Teardown removes every router namespace with prefix ("" is
// DefaultPrefix), and with them every bridge, VXLAN device and pod veth in
// them.
func (r *Reconciler) Teardown(ctx context.Context, prefix string) error {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if err := validatePrefix(prefix); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	existing, err := listNamedNS()
	if err != nil {
		return err
	}
	_, remove := planNamespaces(prefix, existing, nil)
	var errs []error
	for _, name := range remove {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := removeRouterNS(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeRouterNS deletes a router namespace. Its VXLAN devices go first:
// the kernel destroys a namespace's links asynchronously, and until it has,
// their VNIs stay taken in the host namespace, which would fail an Apply
// that adds the VPC back straight away.
func removeRouterNS(name string) error {
	if ns, err := openNamedNS(name); err == nil {
		err := deleteVXLANs(ns)
		_ = ns.Close()
		if err != nil {
			return fmt.Errorf("removing router namespace %s: %w", name, err)
		}
	}
	return deleteNamedNS(name)
}

func deleteVXLANs(ns netns.NsHandle) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("opening netlink: %w", err)
	}
	defer h.Close()
	links, err := listLinks(h)
	if err != nil {
		return err
	}
	for _, l := range links {
		if _, ok := l.(*netlink.Vxlan); ok {
			if err := h.LinkDel(l); err != nil {
				return fmt.Errorf("deleting VXLAN device %s: %w", l.Attrs().Name, err)
			}
		}
	}
	return nil
}

// routerVPC is one VPC being applied to its router namespace.
type routerVPC struct {
	vpc      VPC
	ns       string     // the router namespace's name
	underlay netip.Addr // this gateway's VTEP address
	mtu      int        // the overlay MTU
	res      *Result
}

func (rv routerVPC) changed(format string, a ...any) {
	rv.res.add("%s: %s", rv.ns, fmt.Sprintf(format, a...))
}

// applyVPC makes one router namespace match its VPC, in dependency order:
// the namespace, forwarding, the VXLAN device, the bridges, then the remote
// subnets' routes and neighbours on the VXLAN device.
func (r *Reconciler) applyVPC(ctx context.Context, rv routerVPC) error {
	ns, created, err := ensureNamedNS(rv.ns)
	if err != nil {
		return err
	}
	defer func() { _ = ns.Close() }()
	if created {
		rv.res.add("created router namespace %s", rv.ns)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("opening netlink: %w", err)
	}
	defer h.Close()

	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding the loopback: %w", err)
	}
	if err := ensureUp(h, lo, rv); err != nil {
		return err
	}
	if changed, err := ensureSysctl(ns, "/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
		return err
	} else if changed {
		rv.changed("turned IPv4 forwarding on")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	vx, err := r.ensureVXLAN(h, ns, rv)
	if err != nil {
		return err
	}
	if err := ensureBridges(h, rv); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return ensureRemote(h, vx, rv)
}

func ensureUp(h *netlink.Handle, l netlink.Link, rv routerVPC) error {
	if l.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("setting %s up: %w", l.Attrs().Name, err)
	}
	rv.changed("set %s up", l.Attrs().Name)
	return nil
}

func ensureMTU(h *netlink.Handle, l netlink.Link, mtu int, rv routerVPC) error {
	if l.Attrs().MTU == mtu {
		return nil
	}
	if err := h.LinkSetMTU(l, mtu); err != nil {
		return fmt.Errorf("setting the MTU of %s to %d: %w", l.Attrs().Name, mtu, err)
	}
	rv.changed("set the MTU of %s to %d (was %d)", l.Attrs().Name, mtu, l.Attrs().MTU)
	return nil
}

// ensureVXLAN makes the VPC's VXLAN device right, recreating it when an
// attribute that is fixed at creation differs, and returns it.
func (r *Reconciler) ensureVXLAN(h *netlink.Handle, ns netns.NsHandle, rv routerVPC) (netlink.Link, error) {
	name := VXLANName(rv.vpc.VNI)
	want := vxlanAttrs{VNI: rv.vpc.VNI, Local: rv.underlay, Port: VXLANPort}
	l, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		l = nil
	case err != nil:
		return nil, fmt.Errorf("finding VXLAN device %s: %w", name, err)
	}
	if l != nil {
		// Listing the link above gave the host namespace an id here if the
		// device's socket is in it; an unassigned id (-1) matches nothing.
		hostID, err := h.GetNetNsIdByFd(int(r.host))
		if err != nil {
			return nil, fmt.Errorf("finding the host namespace's id: %w", err)
		}
		problem := "it is not a VXLAN device"
		if vx, ok := l.(*netlink.Vxlan); ok {
			problem = vxlanProblem(observeVXLAN(vx), want, hostID)
		}
		if problem != "" {
			if err := h.LinkDel(l); err != nil {
				return nil, fmt.Errorf("deleting %s (%s): %w", name, problem, err)
			}
			rv.changed("deleted %s to make it again: %s", name, problem)
			l = nil
		}
	}
	if l == nil {
		if l, err = r.createVXLAN(h, ns, name, rv); err != nil {
			return nil, err
		}
		rv.changed("created VXLAN device %s (VNI %d, local %v)", name, rv.vpc.VNI, rv.underlay)
	}
	if mac := TunnelMAC(rv.underlay); l.Attrs().HardwareAddr.String() != mac.String() {
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return nil, fmt.Errorf("setting the MAC address of %s to %v: %w", name, mac, err)
		}
		rv.changed("set the MAC address of %s to %v", name, mac)
	}
	if err := ensureMTU(h, l, rv.mtu, rv); err != nil {
		return nil, err
	}
	if err := ensureUp(h, l, rv); err != nil {
		return nil, err
	}
	return l, nil
}

// createVXLAN creates the VPC's VXLAN device from the host namespace with
// the router namespace as its destination. The kernel opens a VXLAN
// device's UDP socket in the namespace of the netlink socket that asks for
// it, so the socket is in the underlay, where the tunnel's packets go, while
// the device is in the router namespace, as when the device is created in
// the host and moved (what Docker's overlay driver does), but with no moment
// where a half-made device sits in the host namespace under a name that
// could clash.
func (r *Reconciler) createVXLAN(h *netlink.Handle, ns netns.NsHandle, name string, rv routerVPC) (netlink.Link, error) {
	host, err := netlink.NewHandleAt(r.host)
	if err != nil {
		return nil, fmt.Errorf("opening netlink in the host namespace: %w", err)
	}
	defer host.Close()
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{
			Name:         name,
			MTU:          rv.mtu,
			HardwareAddr: TunnelMAC(rv.underlay),
			Namespace:    netlink.NsFd(ns),
		},
		VxlanId:  int(rv.vpc.VNI),
		SrcAddr:  rv.underlay.AsSlice(),
		Port:     VXLANPort,
		Learning: false,
	}
	if err := host.LinkAdd(vx); err != nil {
		if errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("creating VXLAN device %s: %w (another VXLAN device in the host namespace has VNI %d or port %d with the same local address)", name, err, rv.vpc.VNI, VXLANPort)
		}
		return nil, fmt.Errorf("creating VXLAN device %s: %w", name, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("finding VXLAN device %s after creating it: %w", name, err)
	}
	return l, nil
}

func observeVXLAN(vx *netlink.Vxlan) vxlanAttrs {
	return vxlanAttrs{
		VNI:         uint32(vx.VxlanId),
		Local:       addrOf(vx.SrcAddr),
		Port:        vx.Port,
		Learning:    vx.Learning,
		LinkNetNSID: vx.NetNsID,
	}
}

// ensureBridges makes one bridge per local subnet, with the subnet's
// gateway address as its only IPv4 address, and removes the bridges of
// subnets the VPC no longer has. Pods attached to a removed bridge lose
// their network: their veths stay, with no master.
func ensureBridges(h *netlink.Handle, rv routerVPC) error {
	links, err := listLinks(h)
	if err != nil {
		return err
	}
	want := map[string]Subnet{}
	for _, sn := range rv.vpc.Subnets {
		want[BridgeName(sn.Name)] = sn
	}
	byName := map[string]netlink.Link{}
	for _, l := range links {
		name := l.Attrs().Name
		if _, ok := want[name]; !ok && strings.HasPrefix(name, bridgeNamePrefix) {
			if err := h.LinkDel(l); err != nil {
				return fmt.Errorf("deleting bridge %s of a subnet no longer listed: %w", name, err)
			}
			rv.changed("deleted bridge %s of a subnet no longer listed", name)
			continue
		}
		byName[name] = l
	}
	for _, sn := range rv.vpc.Subnets {
		if err := ensureBridge(h, byName[BridgeName(sn.Name)], sn, rv); err != nil {
			return fmt.Errorf("subnet %q (%v): %w", sn.Name, sn.CIDR, err)
		}
	}
	return nil
}

func ensureBridge(h *netlink.Handle, l netlink.Link, sn Subnet, rv routerVPC) error {
	name := BridgeName(sn.Name)
	if l != nil {
		if _, ok := l.(*netlink.Bridge); !ok {
			if err := h.LinkDel(l); err != nil {
				return fmt.Errorf("deleting %s, which is a %s and not a bridge: %w", name, l.Type(), err)
			}
			rv.changed("deleted %s, which was a %s and not a bridge", name, l.Type())
			l = nil
		}
	}
	if l == nil {
		// Made with the default MTU and then set: only an MTU set after
		// creation sticks when the last port leaves (otherwise the kernel
		// puts the bridge back to 1500 and the next pod would get that).
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: BridgeMAC(rv.vpc.VNI, sn.Name)}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("creating bridge %s: %w", name, err)
		}
		var err error
		if l, err = h.LinkByName(name); err != nil {
			return fmt.Errorf("finding bridge %s after creating it: %w", name, err)
		}
		rv.changed("created bridge %s for subnet %q", name, sn.Name)
	}
	if err := ensureMTU(h, l, rv.mtu, rv); err != nil {
		return err
	}
	if mac := BridgeMAC(rv.vpc.VNI, sn.Name); l.Attrs().HardwareAddr.String() != mac.String() {
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("setting the MAC address of %s to %v: %w", name, mac, err)
		}
		rv.changed("set the MAC address of %s to %v", name, mac)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing the addresses of %s: %w", name, err)
	}
	var have []netip.Prefix
	for _, a := range addrs {
		have = append(have, prefixOf(a.IPNet))
	}
	add, remove := diff(have, []netip.Prefix{netip.PrefixFrom(GatewayAddr(sn.CIDR), sn.CIDR.Bits())})
	for _, p := range remove {
		if err := h.AddrDel(l, &netlink.Addr{IPNet: ipNetOf(p)}); err != nil {
			return fmt.Errorf("removing address %v from %s: %w", p, name, err)
		}
		rv.changed("removed address %v from %s", p, name)
	}
	for _, p := range add {
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNetOf(p)}); err != nil {
			return fmt.Errorf("adding address %v to %s: %w", p, name, err)
		}
		rv.changed("added address %v to %s", p, name)
	}
	return ensureUp(h, l, rv)
}

// ensureRemote makes the VXLAN device's routes, neighbours and FDB entries
// those of the VPC's remote subnets.
func ensureRemote(h *netlink.Handle, vx netlink.Link, rv routerVPC) error {
	have, err := observeRemote(h, vx)
	if err != nil {
		return err
	}
	p := planRemote(have, wantRemote(rv.vpc))
	if p.empty() {
		return nil
	}
	idx, name := vx.Attrs().Index, vx.Attrs().Name
	for _, rt := range p.RemoveRoutes {
		nr := &netlink.Route{LinkIndex: idx, Dst: ipNetOf(rt.Dst), Gw: rt.Via.AsSlice(), Priority: rt.Priority, Table: syscall.RT_TABLE_MAIN}
		if err := h.RouteDel(nr); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("removing route %v via %v from %s: %w", rt.Dst, rt.Via, name, err)
		}
		rv.changed("removed route %v via %v dev %s", rt.Dst, rt.Via, name)
	}
	for _, n := range p.RemoveNeighbours {
		nn := &netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, IP: n.IP.AsSlice()}
		if err := h.NeighDel(nn); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("removing neighbour %v from %s: %w", n.IP, name, err)
		}
		rv.changed("removed neighbour %v lladdr %s dev %s", n.IP, n.MAC, name)
	}
	for _, e := range p.RemoveFDB {
		fe, err := fdbNeigh(idx, e)
		if err != nil {
			return err
		}
		if err := h.NeighDel(fe); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("removing FDB entry %s dst %v from %s: %w", e.MAC, e.Dst, name, err)
		}
		rv.changed("removed FDB entry %s dst %v dev %s", e.MAC, e.Dst, name)
	}
	// FDB, then neighbours, then routes: a route is used as soon as it is
	// there, and finds what it leads to.
	for _, e := range p.AddFDB {
		fe, err := fdbNeigh(idx, e)
		if err != nil {
			return err
		}
		if err := h.NeighSet(fe); err != nil {
			return fmt.Errorf("adding FDB entry %s dst %v to %s: %w", e.MAC, e.Dst, name, err)
		}
		rv.changed("added FDB entry %s dst %v dev %s", e.MAC, e.Dst, name)
	}
	for _, n := range p.AddNeighbours {
		mac, err := net.ParseMAC(n.MAC)
		if err != nil {
			return fmt.Errorf("adding neighbour %v to %s: %w", n.IP, name, err)
		}
		nn := &netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: n.IP.AsSlice(), HardwareAddr: mac}
		if err := h.NeighSet(nn); err != nil {
			return fmt.Errorf("adding neighbour %v lladdr %s to %s: %w", n.IP, n.MAC, name, err)
		}
		rv.changed("added neighbour %v lladdr %s dev %s", n.IP, n.MAC, name)
	}
	for _, rt := range p.AddRoutes {
		nr := &netlink.Route{
			LinkIndex: idx,
			Dst:       ipNetOf(rt.Dst),
			Gw:        rt.Via.AsSlice(),
			Flags:     int(netlink.FLAG_ONLINK),
			Table:     syscall.RT_TABLE_MAIN,
			Scope:     netlink.SCOPE_UNIVERSE,
		}
		// Replace, not add: a route to the same subnet through another
		// device would otherwise stand in the way.
		if err := h.RouteReplace(nr); err != nil {
			return fmt.Errorf("adding route %v via %v to %s: %w", rt.Dst, rt.Via, name, err)
		}
		rv.changed("added route %v via %v dev %s onlink", rt.Dst, rt.Via, name)
	}
	return nil
}

func fdbNeigh(idx int, e fdbEntry) (*netlink.Neigh, error) {
	mac, err := net.ParseMAC(e.MAC)
	if err != nil {
		return nil, fmt.Errorf("FDB entry for %s: %w", e.MAC, err)
	}
	return &netlink.Neigh{
		LinkIndex:    idx,
		Family:       syscall.AF_BRIDGE,
		Flags:        netlink.NTF_SELF,
		State:        netlink.NUD_PERMANENT,
		IP:           e.Dst.AsSlice(),
		HardwareAddr: mac,
	}, nil
}

// observeRemote reads the routes, neighbours and FDB entries of a VXLAN
// device. Every IPv4 route through it in the main table is Apply's (the
// device has no address, so the kernel adds none); FDB entries without a
// destination are the device's own multicast addresses, not tunnels.
func observeRemote(h *netlink.Handle, vx netlink.Link) (remoteState, error) {
	var s remoteState
	idx, name := vx.Attrs().Index, vx.Attrs().Name
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4,
			&netlink.Route{LinkIndex: idx, Table: syscall.RT_TABLE_MAIN},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return s, fmt.Errorf("listing the routes through %s: %w", name, err)
	}
	for _, rt := range routes {
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if rt.Dst != nil {
			dst = prefixOf(rt.Dst)
		}
		s.Routes = append(s.Routes, route{
			Dst:      dst,
			Via:      addrOf(rt.Gw),
			OnLink:   rt.Flags&int(netlink.FLAG_ONLINK) != 0,
			Priority: rt.Priority,
		})
	}
	neighs, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(idx, netlink.FAMILY_V4) })
	if err != nil {
		return s, fmt.Errorf("listing the neighbours of %s: %w", name, err)
	}
	for _, n := range neighs {
		s.Neighbours = append(s.Neighbours, neighbour{
			IP:        addrOf(n.IP),
			MAC:       n.HardwareAddr.String(),
			Permanent: n.State&netlink.NUD_PERMANENT != 0,
		})
	}
	fdb, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(idx, syscall.AF_BRIDGE) })
	if err != nil {
		return s, fmt.Errorf("listing the FDB of %s: %w", name, err)
	}
	for _, n := range fdb {
		if n.IP == nil {
			continue
		}
		s.FDB = append(s.FDB, fdbEntry{MAC: n.HardwareAddr.String(), Dst: addrOf(n.IP)})
	}
	return s, nil
}

// linkMTUOf returns the MTU of the host link that holds addr.
func linkMTUOf(h *netlink.Handle, addr netip.Addr) (int, error) {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return 0, fmt.Errorf("listing the host namespace's addresses: %w", err)
	}
	for _, a := range addrs {
		if addrOf(a.IP) != addr {
			continue
		}
		l, err := h.LinkByIndex(a.LinkIndex)
		if err != nil {
			return 0, fmt.Errorf("finding the link holding underlay address %v: %w", addr, err)
		}
		return l.Attrs().MTU, nil
	}
	return 0, fmt.Errorf("underlay address %v is on no link of the host namespace: configure it there first, or fix Spec.Underlay", addr)
}

func listLinks(h *netlink.Handle) ([]netlink.Link, error) {
	links, err := retryDump(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	return links, nil
}

// retryDump retries a netlink dump that a concurrent change interrupted
// (the kernel then says its answer may be inconsistent).
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	for range 5 {
		v, err := dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return dump()
}

// addrOf converts a netlink IP (4 or 16 bytes) to a netip.Addr, IPv4 as
// such; the zero Addr for none.
func addrOf(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	a, _ := netip.AddrFromSlice(ip)
	return a
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(addrOf(n.IP), ones)
}

func ipNetOf(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
