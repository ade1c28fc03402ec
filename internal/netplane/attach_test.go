package netplane

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestAttachPodIsIdempotentAndCheckPodSaysWhatIsWrong(t *testing.T) {
	l := newLab(t)
	l.applyAll(t, twoVPCs)
	a2 := l.addPod(1, vniA, "a-right", "10.10.2.10/24")
	p := l.addPod(0, vniA, "a-left", "10.10.1.10/24")
	l.inRouter(t, 0, vniA, func(h *netlink.Handle) {
		// The gateway's MAC must not follow the pods (pods cache it).
		if mac := mustLink(t, h, BridgeName("a-left")).Attrs().HardwareAddr; mac.String() != BridgeMAC(vniA, "a-left").String() {
			t.Errorf("bridge MAC %v with a pod attached, want %v", mac, BridgeMAC(vniA, "a-left"))
		}
	})
	requireReach(t, p, "10.10.2.10", a2)

	first, err := AttachPod(t.Context(), p.spec)
	if err != nil {
		t.Fatalf("attaching an attached pod again: %v", err)
	}
	again, err := AttachPod(t.Context(), p.spec)
	if err != nil {
		t.Fatal(err)
	}
	if first.HostVeth != again.HostVeth || first.PodMAC.String() != again.PodMAC.String() || first.MTU != again.MTU {
		t.Errorf("AttachPod gave %+v, then %+v", first, again)
	}
	if first.HostVeth != HostVethName(p.spec.ContainerID, p.spec.IfName) || first.MTU != 1500-VXLANOverhead || len(first.PodMAC) != 6 {
		t.Errorf("attachment %+v", first)
	}
	if err := CheckPod(t.Context(), p.spec); err != nil {
		t.Fatalf("CheckPod of a pod just attached: %v", err)
	}

	// Damage, seen by CheckPod and repaired by AttachPod.
	pod, err := netlink.NewHandleAt(p.ns)
	must(t, err)
	defer pod.Close()
	eth0 := mustLink(t, pod, "eth0")
	must(t, pod.RouteDel(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: GatewayAddr(p.spec.Addr).AsSlice()}))
	l.inRouter(t, 0, vniA, func(h *netlink.Handle) {
		must(t, h.LinkSetNoMaster(mustLink(t, h, first.HostVeth)))
	})
	err = CheckPod(t.Context(), p.spec)
	for _, want := range []string{"no default route via 10.10.1.1", "not on bridge " + BridgeName("a-left")} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckPod: %v, want an error saying %q", err, want)
		}
	}
	if _, err := AttachPod(t.Context(), p.spec); err != nil {
		t.Fatal(err)
	}
	if err := CheckPod(t.Context(), p.spec); err != nil {
		t.Fatalf("CheckPod after AttachPod repaired the pod: %v", err)
	}
	requireReach(t, p, "10.10.2.10", a2)

	t.Run("refuses", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			change func(*Pod)
			want   string
		}{
			{"another address on the same interface", func(q *Pod) { q.Addr = netip.MustParsePrefix("10.10.1.20/24") }, "with addresses [10.10.1.10/24]"},
			{"another container's interface", func(q *Pod) { q.ContainerID = "other" }, "is not the peer of"},
			{"a subnet of another host", func(q *Pod) { q.Subnet = "a-right" }, "bridge " + BridgeName("a-right")},
			{"a VPC not on this host", func(q *Pod) { q.VNI = 999 }, "router namespace " + RouterNS(l.hosts[0].prefix, 999) + " of VNI 999 is missing"},
			{"an address outside the subnet", func(q *Pod) { q.Subnet = "a-left2" }, "not in subnet \"a-left2\""},
			{"a missing pod namespace", func(q *Pod) { q.NetNSPath = "/run/netns/" + l.base + "-nonexistent" }, "opening the pod's network namespace"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				q := p.spec
				tc.change(&q)
				_, err := AttachPod(t.Context(), q)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("AttachPod: %v, want an error saying %q", err, tc.want)
				}
			})
		}
		if err := CheckPod(t.Context(), p.spec); err != nil {
			t.Fatalf("a refused AttachPod harmed the pod: %v", err)
		}
	})

	t.Run("detach", func(t *testing.T) {
		if err := DetachPod(t.Context(), p.spec); err != nil {
			t.Fatal(err)
		}
		if err := CheckPod(t.Context(), p.spec); err == nil || !strings.Contains(err.Error(), "eth0 is missing") {
			t.Errorf("CheckPod after DetachPod: %v, want eth0 missing", err)
		}
		if err := DetachPod(t.Context(), p.spec); err != nil {
			t.Errorf("detaching twice: %v", err)
		}
		gone := p.spec
		gone.VNI = 999
		if err := DetachPod(t.Context(), gone); err != nil {
			t.Errorf("detaching from a router namespace that does not exist: %v", err)
		}
		l.inRouter(t, 0, vniA, func(h *netlink.Handle) {
			if mtu := mustLink(t, h, BridgeName("a-left")).Attrs().MTU; mtu != 1500-VXLANOverhead {
				t.Errorf("bridge MTU is %d once its last pod left, want %d (the next pod would get it)", mtu, 1500-VXLANOverhead)
			}
		})
		requireNoReach(t, a2, "10.10.1.10")
	})

	t.Run("a leftover router end is replaced", func(t *testing.T) {
		l.inRouter(t, 0, vniA, func(h *netlink.Handle) {
			must(t, h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: first.HostVeth}, PeerName: "leftover"}))
		})
		a, err := AttachPod(t.Context(), p.spec)
		if err != nil {
			t.Fatal(err)
		}
		if a.HostVeth != first.HostVeth || a.MTU != first.MTU {
			t.Errorf("attachment %+v, want %+v with a new MAC", a, first)
		}
		if err := CheckPod(t.Context(), p.spec); err != nil {
			t.Fatal(err)
		}
		l.inRouter(t, 0, vniA, func(h *netlink.Handle) {
			if linkExists(t, h, "leftover") {
				t.Error("the leftover veth's peer is still there")
			}
		})
		requireReach(t, p, "10.10.2.10", a2)
		requireReach(t, a2, "10.10.1.10", p)
	})
}
