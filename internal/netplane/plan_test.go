package netplane

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseRouterNS(t *testing.T) {
	for _, tc := range []struct {
		prefix, name string
		vni          uint32
		ok           bool
	}{
		{"fornax", "fornax-vpc-100", 100, true},
		{"fornax", RouterNS("fornax", maxVNI), maxVNI, true},
		{"a", "a-vpc-1", 1, true},
		{"a", "a-b-vpc-1", 0, false},     // prefix "a-b"'s
		{"a-b", "a-vpc-1", 0, false},     // prefix "a"'s
		{"a", "a-vpc-01", 0, false},      // not what RouterNS makes
		{"a", "a-vpc-", 0, false},        // no VNI
		{"a", "a-vpc-1x", 0, false},      // trailing junk
		{"a", "a-vpc-1-vpc-2", 0, false}, // prefix "a-vpc-1"'s
		{"a", "a-vpc-4294967296", 0, false},
		{"a", "b-vpc-1", 0, false},
		{"a", "ax-vpc-1", 0, false},
	} {
		vni, ok := ParseRouterNS(tc.prefix, tc.name)
		if vni != tc.vni || ok != tc.ok {
			t.Errorf("ParseRouterNS(%q, %q) = %d, %v; want %d, %v", tc.prefix, tc.name, vni, ok, tc.vni, tc.ok)
		}
	}
}

func TestNamesFitInterfaceNames(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, name := range []string{BridgeName(long), VXLANName(maxVNI), HostVethName(long, "eth0")} {
		if len(name) > 15 {
			t.Errorf("%q is longer than 15 bytes", name)
		}
	}
	if HostVethName("c1", "eth0") == HostVethName("c1", "net1") {
		t.Error("two interfaces of one container get the same router veth name")
	}
	if got := HostVethName("c1", "eth0"); got != "fx"+shortHash("c1/eth0", 12) {
		t.Errorf("HostVethName(c1, eth0) = %q: not derived from the container and interface alone", got)
	}
	if mac := BridgeMAC(1, "x"); mac[0]&3 != 2 {
		t.Errorf("BridgeMAC %v is not a locally administered unicast address", mac)
	}
	if BridgeMAC(1, "x").String() == BridgeMAC(2, "x").String() {
		t.Error("two VPCs' subnets of one name get one bridge MAC")
	}
	if !strings.HasPrefix(BridgeName("x"), bridgeNamePrefix) {
		t.Errorf("BridgeName does not start with %q", bridgeNamePrefix)
	}
}

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		have, want, add, remove []string
	}{
		{nil, nil, nil, nil},
		{nil, []string{"a", "b"}, []string{"a", "b"}, nil},
		{[]string{"a", "b"}, nil, nil, []string{"a", "b"}},
		{[]string{"a", "b"}, []string{"b", "c"}, []string{"c"}, []string{"a"}},
		{[]string{"a", "a"}, []string{"c", "c"}, []string{"c"}, []string{"a"}},
	} {
		add, remove := diff(tc.have, tc.want)
		if !slices.Equal(add, tc.add) || !slices.Equal(remove, tc.remove) {
			t.Errorf("diff(%v, %v) = %v, %v; want %v, %v", tc.have, tc.want, add, remove, tc.add, tc.remove)
		}
	}
}

func TestPlanNamespaces(t *testing.T) {
	existing := []string{"p-vpc-1", "p-vpc-2", "p-vpc-02", "px-vpc-3", "q-vpc-1", "p-other", "p-x-vpc-4"}
	create, remove := planNamespaces("p", existing, []uint32{2, 5})
	if !slices.Equal(create, []uint32{5}) {
		t.Errorf("create = %v, want [5]", create)
	}
	if !slices.Equal(remove, []string{"p-vpc-1"}) {
		t.Errorf("remove = %v, want [p-vpc-1]: only prefix p's router namespaces may go", remove)
	}
	if _, remove := planNamespaces("p", existing, nil); !slices.Equal(remove, []string{"p-vpc-1", "p-vpc-2"}) {
		t.Errorf("teardown removes %v, want [p-vpc-1 p-vpc-2]", remove)
	}
}

func TestVXLANProblem(t *testing.T) {
	local := netip.MustParseAddr("192.0.2.1")
	want := vxlanAttrs{VNI: 7, Local: local, Port: VXLANPort}
	good := want
	good.LinkNetNSID = 3
	for _, tc := range []struct {
		name     string
		have     func(*vxlanAttrs)
		hostNSID int
		problem  string
	}{
		{"right", func(*vxlanAttrs) {}, 3, ""},
		{"wrong VNI", func(a *vxlanAttrs) { a.VNI = 8 }, 3, "VNI"},
		{"wrong local", func(a *vxlanAttrs) { a.Local = netip.MustParseAddr("192.0.2.9") }, 3, "local"},
		{"wrong port", func(a *vxlanAttrs) { a.Port = 8472 }, 3, "port"},
		{"learning", func(a *vxlanAttrs) { a.Learning = true }, 3, "learns"},
		{"made inside the router namespace", func(a *vxlanAttrs) { a.LinkNetNSID = -1 }, -1, "underlay"},
		{"socket in another namespace", func(a *vxlanAttrs) { a.LinkNetNSID = 4 }, 3, "underlay"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			have := good
			tc.have(&have)
			got := vxlanProblem(have, want, tc.hostNSID)
			if (got == "") != (tc.problem == "") || !strings.Contains(got, tc.problem) {
				t.Errorf("vxlanProblem = %q, want one mentioning %q", got, tc.problem)
			}
		})
	}
}

func TestWantRemote(t *testing.T) {
	g1, g2 := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	v := VPC{Name: "a", VNI: 1, Remote: []RemoteSubnet{
		{Name: "r1", CIDR: netip.MustParsePrefix("10.0.1.0/24"), Gateway: g1},
		{Name: "r2", CIDR: netip.MustParsePrefix("10.0.2.0/24"), Gateway: g1},
		{Name: "r3", CIDR: netip.MustParsePrefix("10.0.3.0/26"), Gateway: g2},
	}}
	s := wantRemote(v)
	wantRoutes := []route{
		{Dst: netip.MustParsePrefix("10.0.1.0/24"), Via: netip.MustParseAddr("10.0.1.1"), OnLink: true},
		{Dst: netip.MustParsePrefix("10.0.2.0/24"), Via: netip.MustParseAddr("10.0.2.1"), OnLink: true},
		{Dst: netip.MustParsePrefix("10.0.3.0/26"), Via: netip.MustParseAddr("10.0.3.1"), OnLink: true},
	}
	if !slices.Equal(s.Routes, wantRoutes) {
		t.Errorf("routes = %v, want %v", s.Routes, wantRoutes)
	}
	m1, m2 := TunnelMAC(g1).String(), TunnelMAC(g2).String()
	wantNeigh := []neighbour{
		{netip.MustParseAddr("10.0.1.1"), m1, true},
		{netip.MustParseAddr("10.0.2.1"), m1, true},
		{netip.MustParseAddr("10.0.3.1"), m2, true},
	}
	if !slices.Equal(s.Neighbours, wantNeigh) {
		t.Errorf("neighbours = %v, want %v", s.Neighbours, wantNeigh)
	}
	if wantFDB := []fdbEntry{{m1, g1}, {m2, g2}}; !slices.Equal(s.FDB, wantFDB) {
		t.Errorf("FDB = %v, want one entry per gateway %v", s.FDB, wantFDB)
	}
}

func TestPlanRemote(t *testing.T) {
	g1, g2 := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	r1 := RemoteSubnet{Name: "r1", CIDR: netip.MustParsePrefix("10.0.1.0/24"), Gateway: g1}
	r2 := RemoteSubnet{Name: "r2", CIDR: netip.MustParsePrefix("10.0.2.0/24"), Gateway: g1}
	moved := r2
	moved.Gateway = g2
	state := func(rs ...RemoteSubnet) remoteState { return wantRemote(VPC{Remote: rs}) }

	t.Run("in sync", func(t *testing.T) {
		if p := planRemote(state(r1, r2), state(r1, r2)); !p.empty() {
			t.Errorf("plan = %+v, want nothing", p)
		}
	})
	t.Run("from nothing", func(t *testing.T) {
		p := planRemote(remoteState{}, state(r1, r2))
		if len(p.AddRoutes) != 2 || len(p.AddNeighbours) != 2 || len(p.AddFDB) != 1 || len(p.RemoveRoutes)+len(p.RemoveNeighbours)+len(p.RemoveFDB) != 0 {
			t.Errorf("plan = %+v, want 2 routes, 2 neighbours, 1 FDB entry added", p)
		}
	})
	t.Run("one remote gone, gateway still used", func(t *testing.T) {
		p := planRemote(state(r1, r2), state(r1))
		if len(p.RemoveRoutes) != 1 || p.RemoveRoutes[0].Dst != r2.CIDR || len(p.RemoveNeighbours) != 1 || len(p.RemoveFDB) != 0 || len(p.AddRoutes)+len(p.AddNeighbours)+len(p.AddFDB) != 0 {
			t.Errorf("plan = %+v, want r2's route and neighbour removed and the FDB kept", p)
		}
	})
	t.Run("remote moved to another gateway", func(t *testing.T) {
		p := planRemote(state(r1, r2), state(r1, moved))
		if len(p.AddRoutes)+len(p.RemoveRoutes) != 0 {
			t.Errorf("routes change: %+v", p)
		}
		if len(p.RemoveNeighbours) != 1 || len(p.AddNeighbours) != 1 || p.AddNeighbours[0].MAC != TunnelMAC(g2).String() {
			t.Errorf("neighbours: %+v, want r2's gateway to point at %v", p, TunnelMAC(g2))
		}
		if len(p.AddFDB) != 1 || p.AddFDB[0].Dst != g2 || len(p.RemoveFDB) != 0 {
			t.Errorf("FDB: %+v, want an entry for %v added and %v's kept", p, g2, g1)
		}
	})
	t.Run("kernel's entries", func(t *testing.T) {
		have := state(r1)
		stale := neighbour{IP: netip.MustParseAddr("10.0.9.1"), MAC: "00:00:00:00:00:00"}
		failed := neighbour{IP: GatewayAddr(r2.CIDR), MAC: ""}
		have.Neighbours = append(have.Neighbours, stale, failed)
		p := planRemote(have, state(r1, r2))
		if len(p.RemoveNeighbours) != 0 {
			t.Errorf("removes %v: entries the kernel made are left to age", p.RemoveNeighbours)
		}
		if len(p.AddNeighbours) != 1 || p.AddNeighbours[0].IP != failed.IP || !p.AddNeighbours[0].Permanent {
			t.Errorf("adds %v, want a permanent entry replacing the unresolved one", p.AddNeighbours)
		}
	})
	t.Run("stray entries", func(t *testing.T) {
		have := state(r1)
		have.Routes = append(have.Routes, route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("10.9.9.9")})
		have.Routes[0].OnLink = false
		have.FDB = append(have.FDB, fdbEntry{MAC: "00:00:00:00:00:00", Dst: g2})
		p := planRemote(have, state(r1))
		if len(p.RemoveRoutes) != 2 || len(p.AddRoutes) != 1 || !p.AddRoutes[0].OnLink {
			t.Errorf("routes: %+v, want the default route removed and r1's made onlink", p)
		}
		if len(p.RemoveFDB) != 1 || p.RemoveFDB[0].Dst != g2 {
			t.Errorf("FDB: %+v, want the flood entry to %v removed", p, g2)
		}
	})
}
