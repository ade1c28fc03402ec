package netplane

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

const vniA, vniB = 100, 200

// twoVPCs is a network with two VPCs that use the same CIDRs: A has two
// subnets on host 1 and one on host 2; B has one on host 1 and two on host
// 2, one of them (10.10.3.0/24) a CIDR that A does not have.
var twoVPCs = []labSubnet{
	{"a", vniA, "a-left", "10.10.1.0/24", 0},
	{"a", vniA, "a-left2", "10.10.4.0/24", 0},
	{"a", vniA, "a-right", "10.10.2.0/24", 1},
	{"b", vniB, "b-left", "10.10.1.0/24", 0},
	{"b", vniB, "b-right", "10.10.2.0/24", 1},
	{"b", vniB, "b-only", "10.10.3.0/24", 1},
}

func TestTrafficFlowsWithinAVPCAndNeverBetweenVPCs(t *testing.T) {
	l := newLab(t)
	l.applyAll(t, twoVPCs)

	a1 := l.addPod(0, vniA, "a-left", "10.10.1.10/24")
	a1b := l.addPod(0, vniA, "a-left", "10.10.1.11/24")
	a4 := l.addPod(0, vniA, "a-left2", "10.10.4.10/24")
	a2 := l.addPod(1, vniA, "a-right", "10.10.2.10/24")
	b1 := l.addPod(0, vniB, "b-left", "10.10.1.10/24")
	b2 := l.addPod(1, vniB, "b-right", "10.10.2.10/24")
	b3 := l.addPod(1, vniB, "b-only", "10.10.3.10/24")

	t.Run("same subnet, same host", func(t *testing.T) {
		requireReach(t, a1, "10.10.1.11", a1b)
		requireReach(t, a1b, "10.10.1.10", a1)
	})
	t.Run("two subnets of a VPC, same host", func(t *testing.T) {
		requireReach(t, a1, "10.10.4.10", a4)
		requireReach(t, a4, "10.10.1.10", a1)
	})
	t.Run("one VPC across hosts over VXLAN", func(t *testing.T) {
		requireReach(t, a1, "10.10.2.10", a2)
		requireReach(t, a2, "10.10.4.10", a4)
		requireReach(t, b1, "10.10.2.10", b2)
		requireReach(t, b2, "10.10.1.10", b1)
	})
	t.Run("the same address in two VPCs is two pods", func(t *testing.T) {
		// a1 and b1, a2 and b2 have the same addresses; each reaches its own.
		requireReach(t, a1, "10.10.2.10", a2)
		requireReach(t, b1, "10.10.2.10", b2)
		requireReach(t, a2, "10.10.1.10", a1)
		requireReach(t, b2, "10.10.1.10", b1)
	})
	t.Run("an address only in the other VPC is unreachable", func(t *testing.T) {
		requireReach(t, b1, "10.10.3.10", b3)
		requireNoReach(t, a1, "10.10.3.10")
		requireNoReach(t, a2, "10.10.3.10")
	})
	t.Run("a full-size packet crosses the tunnel", func(t *testing.T) {
		// The pods' MTU leaves room for VXLAN: a segment of the largest
		// size the pods use crosses without fragmenting.
		if a1.mtu(t) != 1500-VXLANOverhead {
			t.Fatalf("pod MTU %d, want %d", a1.mtu(t), 1500-VXLANOverhead)
		}
		requireBigTransfer(t, b2, b1)
	})
	t.Run("applying again changes nothing", func(t *testing.T) {
		l.requireNoChanges(t, twoVPCs, false)
	})
	t.Run("a new Reconciler after a restart changes nothing", func(t *testing.T) {
		l.requireNoChanges(t, twoVPCs, true)
		requireReach(t, a1, "10.10.2.10", a2)
	})
}

func TestVXLANSocketStaysInTheUnderlay(t *testing.T) {
	l := newLab(t)
	l.applyAll(t, twoVPCs)
	h := l.hosts[0]
	if !listensUDP(t, h.name, VXLANPort) {
		t.Errorf("no UDP socket on port %d in host namespace %s", VXLANPort, h.name)
	}
	for _, vni := range []uint32{vniA, vniB} {
		name := RouterNS(h.prefix, vni)
		if listensUDP(t, name, VXLANPort) {
			t.Errorf("a UDP socket on port %d is in router namespace %s: the tunnel would have no route to the underlay", VXLANPort, name)
		}
		l.inRouter(t, 0, vni, func(rh *netlink.Handle) {
			vx := mustLink(t, rh, VXLANName(vni)).(*netlink.Vxlan)
			if vx.VxlanId != int(vni) || vx.Learning || vx.Port != VXLANPort || !vx.SrcAddr.Equal(h.underlay.AsSlice()) ||
				vx.MTU != 1500-VXLANOverhead || vx.HardwareAddr.String() != TunnelMAC(h.underlay).String() {
				t.Errorf("VXLAN device %+v", vx)
			}
		})
	}
}

func TestApplyRemovesWhatTheSpecNoLongerNames(t *testing.T) {
	l := newLab(t)
	l.applyAll(t, twoVPCs)
	h1 := l.hosts[0]
	a1 := l.addPod(0, vniA, "a-left", "10.10.1.10/24")
	l.addPod(0, vniA, "a-left2", "10.10.4.10/24")
	a2 := l.addPod(1, vniA, "a-right", "10.10.2.10/24")
	requireReach(t, a1, "10.10.2.10", a2)

	// Host 1 drops its second subnet of A, A's remote subnet (the only one
	// through host 2), and VPC B altogether.
	smaller := []labSubnet{twoVPCs[0]}
	changes := l.apply(t, 0, l.spec(0, smaller))
	t.Logf("changes:\n%s", strings.Join(changes, "\n"))
	if routerNSExists(t, RouterNS(h1.prefix, vniB)) {
		t.Errorf("router namespace of VPC B is still there")
	}
	if !routerNSExists(t, RouterNS(h1.prefix, vniA)) {
		t.Fatalf("router namespace of VPC A is gone")
	}
	l.inRouter(t, 0, vniA, func(h *netlink.Handle) {
		if linkExists(t, h, BridgeName("a-left2")) {
			t.Errorf("bridge of subnet a-left2 is still there")
		}
		if !linkExists(t, h, BridgeName("a-left")) {
			t.Errorf("bridge of subnet a-left is gone")
		}
		have, err := observeRemote(h, mustLink(t, h, VXLANName(vniA)))
		if err != nil {
			t.Fatal(err)
		}
		if len(have.Routes)+len(have.Neighbours)+len(have.FDB) != 0 {
			t.Errorf("routes, neighbours or FDB entries of the removed remote subnet remain: %+v", have)
		}
	})
	requireNoReach(t, a1, "10.10.2.10")
	if changes := l.apply(t, 0, l.spec(0, smaller)); len(changes) != 0 {
		t.Fatalf("applying the smaller Spec again changed:\n%s", strings.Join(changes, "\n"))
	}

	// Everything back: traffic flows again.
	l.apply(t, 0, l.spec(0, twoVPCs))
	requireReach(t, a1, "10.10.2.10", a2)
}

func TestApplyRepairsDamage(t *testing.T) {
	l := newLab(t)
	l.applyAll(t, twoVPCs)
	a1 := l.addPod(0, vniA, "a-left", "10.10.1.10/24")
	a2 := l.addPod(1, vniA, "a-right", "10.10.2.10/24")
	b1 := l.addPod(0, vniB, "b-left", "10.10.1.10/24")
	b2 := l.addPod(1, vniB, "b-right", "10.10.2.10/24")
	requireReach(t, a1, "10.10.2.10", a2)
	requireReach(t, b1, "10.10.2.10", b2)

	for _, tc := range []struct {
		name   string
		host   int
		vni    uint32
		damage func(t *testing.T, h *netlink.Handle)
	}{
		{"route deleted", 0, vniA, func(t *testing.T, h *netlink.Handle) {
			vx := mustLink(t, h, VXLANName(vniA))
			must(t, h.RouteDel(&netlink.Route{LinkIndex: vx.Attrs().Index, Dst: ipNetOf(netip.MustParsePrefix("10.10.2.0/24"))}))
		}},
		{"neighbour and FDB entry deleted", 1, vniA, func(t *testing.T, h *netlink.Handle) {
			vx := mustLink(t, h, VXLANName(vniA))
			must(t, h.NeighDel(&netlink.Neigh{LinkIndex: vx.Attrs().Index, IP: net.ParseIP("10.10.1.1")}))
			e, _ := fdbNeigh(vx.Attrs().Index, fdbEntry{MAC: TunnelMAC(l.hosts[0].underlay).String(), Dst: l.hosts[0].underlay})
			must(t, h.NeighDel(e))
		}},
		{"MTUs changed", 0, vniA, func(t *testing.T, h *netlink.Handle) {
			must(t, h.LinkSetMTU(mustLink(t, h, VXLANName(vniA)), 1400))
			must(t, h.LinkSetMTU(mustLink(t, h, BridgeName("a-left")), 1300))
		}},
		{"VXLAN device deleted", 0, vniA, func(t *testing.T, h *netlink.Handle) {
			must(t, h.LinkDel(mustLink(t, h, VXLANName(vniA))))
		}},
		{"VXLAN device with the wrong VNI, made in the router namespace", 1, vniB, func(t *testing.T, h *netlink.Handle) {
			must(t, h.LinkDel(mustLink(t, h, VXLANName(vniB))))
			must(t, h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: VXLANName(vniB)}, VxlanId: 999, Port: VXLANPort}))
		}},
		{"VXLAN device made in the router namespace", 1, vniB, func(t *testing.T, h *netlink.Handle) {
			must(t, h.LinkDel(mustLink(t, h, VXLANName(vniB))))
			must(t, h.LinkAdd(&netlink.Vxlan{
				LinkAttrs: netlink.LinkAttrs{Name: VXLANName(vniB), HardwareAddr: TunnelMAC(l.hosts[1].underlay)},
				VxlanId:   vniB, SrcAddr: l.hosts[1].underlay.AsSlice(), Port: VXLANPort,
			}))
		}},
		{"bridge address changed, devices down", 0, vniB, func(t *testing.T, h *netlink.Handle) {
			br := mustLink(t, h, BridgeName("b-left"))
			must(t, h.AddrDel(br, &netlink.Addr{IPNet: ipNetOf(netip.MustParsePrefix("10.10.1.1/24"))}))
			must(t, h.AddrAdd(br, &netlink.Addr{IPNet: ipNetOf(netip.MustParsePrefix("10.10.1.254/24"))}))
			must(t, h.LinkSetDown(br))
			must(t, h.LinkSetDown(mustLink(t, h, VXLANName(vniB))))
		}},
		{"stray bridge, route, neighbour, FDB entry", 0, vniB, func(t *testing.T, h *netlink.Handle) {
			must(t, h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-stray"}}))
			vx := mustLink(t, h, VXLANName(vniB))
			must(t, h.RouteAdd(&netlink.Route{LinkIndex: vx.Attrs().Index, Dst: ipNetOf(netip.MustParsePrefix("10.99.0.0/16")), Gw: net.ParseIP("10.99.0.1"), Flags: int(netlink.FLAG_ONLINK)}))
			must(t, h.NeighSet(&netlink.Neigh{LinkIndex: vx.Attrs().Index, State: netlink.NUD_PERMANENT, IP: net.ParseIP("10.99.0.1"), HardwareAddr: TunnelMAC(netip.MustParseAddr("192.0.2.99"))}))
			// The kernel replaces only unicast FDB entries: the flood
			// entry is appended, as `bridge fdb append` does.
			e, _ := fdbNeigh(vx.Attrs().Index, fdbEntry{MAC: "00:00:00:00:00:00", Dst: netip.MustParseAddr("192.0.2.99")})
			must(t, h.NeighAppend(e))
		}},
		{"forwarding off", 1, vniA, func(t *testing.T, h *netlink.Handle) {
			ns, err := openNamedNS(RouterNS(l.hosts[1].prefix, vniA))
			must(t, err)
			defer func() { _ = ns.Close() }()
			must(t, inNamespace(ns, func() error {
				return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("0"), 0o644)
			}))
		}},
		{"router namespace deleted", 1, vniB, func(t *testing.T, h *netlink.Handle) {
			must(t, removeRouterNS(RouterNS(l.hosts[1].prefix, vniB)))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l.inRouter(t, tc.host, tc.vni, func(h *netlink.Handle) { tc.damage(t, h) })
			changes := l.apply(t, tc.host, l.spec(tc.host, twoVPCs))
			if len(changes) == 0 {
				t.Fatal("Apply changed nothing")
			}
			t.Logf("repairs:\n%s", strings.Join(changes, "\n"))
			l.requireNoChanges(t, twoVPCs, false)
			if tc.name == "router namespace deleted" {
				// Its pods' veths went with it, once the kernel destroyed
				// the old namespace: wire b2 again then.
				waitFor(t, "b2's interface to go with the old router namespace", func() error {
					h, err := netlink.NewHandleAt(b2.ns)
					if err != nil {
						return err
					}
					defer h.Close()
					if _, err := h.LinkByName(b2.spec.IfName); err == nil {
						return fmt.Errorf("%s is still there", b2.spec.IfName)
					}
					return nil
				})
				if _, err := AttachPod(t.Context(), b2.spec); err != nil {
					t.Fatal(err)
				}
			}
			requireReach(t, a1, "10.10.2.10", a2)
			requireReach(t, b1, "10.10.2.10", b2)
			requireReach(t, b2, "10.10.1.10", b1)
		})
	}
	l.inRouter(t, 0, vniB, func(h *netlink.Handle) {
		if linkExists(t, h, "br-stray") {
			t.Error("the stray bridge is still there")
		}
	})
}

func TestTeardownLeavesNothingAndTouchesOnlyItsPrefix(t *testing.T) {
	l := newLab(t)
	l.applyAll(t, twoVPCs)
	l.addPod(0, vniA, "a-left", "10.10.1.10/24")
	h1 := l.hosts[0]
	// Namespaces that look like router namespaces but are not h1's.
	others := []string{h1.prefix + "x-vpc-5", h1.prefix + "-vpc-05", h1.prefix + "-x-vpc-5", l.hosts[1].prefix + "-vpc-7"}
	for _, name := range others {
		ns, err := createNamedNS(name)
		if err != nil {
			t.Fatal(err)
		}
		_ = ns.Close()
		t.Cleanup(func() { _ = deleteNamedNS(name) })
	}
	l.apply(t, 0, l.spec(0, twoVPCs[:1]))
	if err := h1.rec.Teardown(t.Context(), h1.prefix); err != nil {
		t.Fatal(err)
	}
	names, err := listNamedNS()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if _, ok := ParseRouterNS(h1.prefix, name); ok {
			t.Errorf("router namespace %s is still there", name)
		}
	}
	for _, name := range others {
		if !routerNSExists(t, name) {
			t.Errorf("Apply or Teardown for prefix %s removed %s", h1.prefix, name)
		}
	}
	if !routerNSExists(t, RouterNS(l.hosts[1].prefix, vniA)) {
		t.Errorf("Teardown of %s removed host 2's router namespace", h1.prefix)
	}
	// Tearing down again, or with no namespaces at all, is fine.
	if err := h1.rec.Teardown(t.Context(), h1.prefix); err != nil {
		t.Fatal(err)
	}
	// A VPC can come back at once: its VNI was freed with its namespace.
	l.applyAll(t, twoVPCs)
}

func TestApplyNeedsTheUnderlayAddress(t *testing.T) {
	l := newLab(t)
	s := l.spec(0, twoVPCs)
	s.Underlay = netip.MustParseAddr("192.0.2.99")
	_, err := l.hosts[0].rec.Apply(t.Context(), s)
	if err == nil || !strings.Contains(err.Error(), "192.0.2.99") {
		t.Fatalf("Apply: %v, want an error naming the missing underlay address", err)
	}
	if routerNSExists(t, RouterNS(s.Prefix, vniA)) {
		t.Error("Apply made a router namespace anyway")
	}
	s.Underlay = netip.MustParseAddr("192.0.2.1")
	s.MTU = 9000
	l.apply(t, 0, s)
	l.inRouter(t, 0, vniA, func(h *netlink.Handle) {
		if mtu := mustLink(t, h, BridgeName("a-left")).Attrs().MTU; mtu != 9000-VXLANOverhead {
			t.Errorf("bridge MTU %d with Spec.MTU 9000, want %d", mtu, 9000-VXLANOverhead)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (p *pod) mtu(t *testing.T) int {
	t.Helper()
	h, err := netlink.NewHandleAt(p.ns)
	must(t, err)
	defer h.Close()
	return mustLink(t, h, p.spec.IfName).Attrs().MTU
}

// requireBigTransfer sends 1 MiB from one pod to another, in segments as
// large as the MTU allows, and checks it all arrives.
func requireBigTransfer(t *testing.T, from, to *pod) {
	t.Helper()
	var ln net.Listener
	must(t, inNamespace(to.ns, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(to.spec.Addr.Addr(), servePort+1).String())
		return err
	}))
	defer func() { _ = ln.Close() }()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer func() { _ = c.Close() }()
		var n int64
		buf := make([]byte, 64<<10)
		for {
			m, err := c.Read(buf)
			n += int64(m)
			if err != nil {
				got <- n
				return
			}
		}
	}()
	var c net.Conn
	must(t, inNamespace(from.ns, func() (err error) {
		c, err = net.Dial("tcp", netip.AddrPortFrom(to.spec.Addr.Addr(), servePort+1).String())
		return err
	}))
	const size = 1 << 20
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatalf("sending: %v", err)
	}
	_ = c.Close()
	if n := <-got; n != size {
		t.Fatalf("received %d bytes of %d", n, size)
	}
}

// listensUDP reports whether namespace name has a UDP socket bound to port.
func listensUDP(t *testing.T, name string, port int) bool {
	t.Helper()
	ns, err := openNamedNS(name)
	must(t, err)
	defer func() { _ = ns.Close() }()
	found := false
	must(t, inNamespace(ns, func() error {
		// thread-self: /proc/self/net would show the main thread's namespace.
		f, err := os.Open("/proc/thread-self/net/udp")
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		s := bufio.NewScanner(f)
		want := fmt.Sprintf(":%04X", port)
		for s.Scan() {
			fields := strings.Fields(s.Text())
			if len(fields) > 1 && strings.HasSuffix(fields[1], want) {
				found = true
			}
		}
		return s.Err()
	}))
	return found
}
