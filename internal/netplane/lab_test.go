package netplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The tests below build two "hosts" on this kernel: two network namespaces
// joined by a veth pair (the underlay, 192.0.2.0/24), each with its own
// Reconciler and namespace prefix, and pods as namespaces wired by
// AttachPod. Every name carries "fxt<pid>-<n>", so tests of one run never
// meet and a killed run's leftovers can be recognised and swept.

// servePort is where every test pod answers with its name.
const servePort = 7000

var labs atomic.Int32

type lab struct {
	t     *testing.T
	base  string // prefix of every namespace of the lab
	hosts [2]*host
	pods  atomic.Int32
	names []string // bridge, VXLAN and veth names made, to check the real host for
}

type host struct {
	name     string // its namespace
	ns       netns.NsHandle
	underlay netip.Addr
	prefix   string // of its router namespaces
	rec      *Reconciler
}

type pod struct {
	name string
	ns   netns.NsHandle
	spec Pod
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: network namespaces, veths, bridges and VXLAN need root (CI runs these tests as root)")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		t.Skipf("skipping: this kernel has no network namespaces: %v", err)
	}
}

// newLab builds two hosts joined by an underlay link, each with a
// Reconciler, and removes all of it when the test ends, checking that
// nothing is left.
func newLab(t *testing.T) *lab {
	t.Helper()
	requireRoot(t)
	sweepDeadLabs(t)
	l := &lab{t: t, base: fmt.Sprintf("fxt%d-%d", os.Getpid(), labs.Add(1))}
	t.Cleanup(l.close)
	for i := range l.hosts {
		h := &host{
			name:     fmt.Sprintf("%s-h%d", l.base, i+1),
			underlay: netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}),
			prefix:   fmt.Sprintf("%s%c", l.base, 'a'+i),
		}
		var err error
		if h.ns, err = createNamedNS(h.name); err != nil {
			t.Fatal(err)
		}
		h.rec = New(h.ns)
		l.hosts[i] = h
	}
	h1, err := netlink.NewHandleAt(l.hosts[0].ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	if err := h1.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ul0"}, PeerName: "ul0", PeerNamespace: netlink.NsFd(l.hosts[1].ns)}); err != nil {
		t.Fatalf("creating the underlay link: %v", err)
	}
	for _, h := range l.hosts {
		nh, err := netlink.NewHandleAt(h.ns)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"lo", "ul0"} {
			link, err := nh.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if name == "ul0" {
				if err := nh.AddrAdd(link, &netlink.Addr{IPNet: ipNetOf(netip.PrefixFrom(h.underlay, 24))}); err != nil {
					t.Fatal(err)
				}
			}
			if err := nh.LinkSetUp(link); err != nil {
				t.Fatal(err)
			}
		}
		nh.Close()
	}
	return l
}

// close tears everything down and fails the test if anything is left.
func (l *lab) close() {
	t := l.t
	for _, h := range l.hosts {
		if h == nil {
			continue
		}
		if err := h.rec.Teardown(context.Background(), h.prefix); err != nil {
			t.Errorf("teardown of %s: %v", h.prefix, err)
		}
		_ = h.ns.Close()
	}
	names, err := listNamedNS()
	if err != nil {
		t.Error(err)
	}
	for _, name := range names {
		if strings.HasPrefix(name, l.base+"-") || strings.HasPrefix(name, l.base+"a") || strings.HasPrefix(name, l.base+"b") {
			if err := deleteNamedNS(name); err != nil {
				t.Error(err)
			}
		}
	}
	if left := l.leftovers(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// leftovers lists the lab's namespaces still in /run/netns and the links
// of the lab's names in the test process's own namespace (where nothing
// should ever have been made).
func (l *lab) leftovers() []string {
	var left []string
	names, _ := listNamedNS()
	for _, name := range names {
		if strings.HasPrefix(name, l.base) && (len(name) == len(l.base) || !isDigit(name[len(l.base)])) {
			left = append(left, netnsDir+"/"+name)
		}
	}
	links, _ := netlink.LinkList()
	for _, link := range links {
		for _, n := range l.names {
			if link.Attrs().Name == n {
				left = append(left, "link "+n+" in the test's namespace")
			}
		}
	}
	return left
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// sweepDeadLabs removes the namespaces of test runs that were killed.
func sweepDeadLabs(t *testing.T) {
	re := regexp.MustCompile(`^fxt([0-9]+)-`)
	names, _ := listNamedNS()
	for _, name := range names {
		m := re.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if err := deleteNamedNS(name); err != nil {
			t.Logf("sweeping %s: %v", name, err)
		}
	}
}

// labSubnet is a subnet of the lab's network: which VPC, and which host
// owns it.
type labSubnet struct {
	vpc   string
	vni   uint32
	name  string
	cidr  string
	owner int
}

// spec is host i's Spec for the lab's network: its own subnets local, the
// other host's remote.
func (l *lab) spec(i int, subnets []labSubnet) Spec {
	h := l.hosts[i]
	s := Spec{Prefix: h.prefix, Underlay: h.underlay}
	for _, sn := range subnets {
		j := -1
		for k, v := range s.VPCs {
			if v.VNI == sn.vni {
				j = k
			}
		}
		if j < 0 {
			s.VPCs = append(s.VPCs, VPC{Name: sn.vpc, VNI: sn.vni})
			j = len(s.VPCs) - 1
			l.names = append(l.names, VXLANName(sn.vni))
		}
		cidr := netip.MustParsePrefix(sn.cidr)
		if sn.owner == i {
			s.VPCs[j].Subnets = append(s.VPCs[j].Subnets, Subnet{Name: sn.name, CIDR: cidr})
			l.names = append(l.names, BridgeName(sn.name))
		} else {
			s.VPCs[j].Remote = append(s.VPCs[j].Remote, RemoteSubnet{Name: sn.name, CIDR: cidr, Gateway: l.hosts[sn.owner].underlay})
		}
	}
	return s
}

// apply applies a Spec on host i and returns the changes.
func (l *lab) apply(t *testing.T, i int, s Spec) []string {
	t.Helper()
	res, err := l.hosts[i].rec.Apply(t.Context(), s)
	if err != nil {
		t.Fatalf("Apply on host %d: %v\nchanges: %v", i+1, err, res.Changes)
	}
	return res.Changes
}

// applyAll applies the lab's network on both hosts.
func (l *lab) applyAll(t *testing.T, subnets []labSubnet) {
	t.Helper()
	for i := range l.hosts {
		if changes := l.apply(t, i, l.spec(i, subnets)); len(changes) == 0 {
			t.Fatalf("the first Apply on host %d changed nothing", i+1)
		}
	}
}

// requireNoChanges applies the lab's network again, with a new Reconciler
// if fresh, and fails if that changes anything.
func (l *lab) requireNoChanges(t *testing.T, subnets []labSubnet, fresh bool) {
	t.Helper()
	for i, h := range l.hosts {
		if fresh {
			h.rec = New(h.ns)
		}
		if changes := l.apply(t, i, l.spec(i, subnets)); len(changes) != 0 {
			t.Fatalf("applying the same Spec again on host %d (fresh Reconciler: %v) changed:\n%s", i+1, fresh, strings.Join(changes, "\n"))
		}
	}
}

// addPod makes a pod namespace on host i, attaches it to a subnet and
// serves its name on servePort.
func (l *lab) addPod(i int, vni uint32, subnet, addr string) *pod {
	l.t.Helper()
	n := l.pods.Add(1)
	p := &pod{name: fmt.Sprintf("%s-p%d", l.base, n)}
	var err error
	if p.ns, err = createNamedNS(p.name); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		_ = p.ns.Close()
		if err := deleteNamedNS(p.name); err != nil {
			l.t.Error(err)
		}
	})
	p.spec = Pod{
		ContainerID: fmt.Sprintf("container-%s", p.name),
		IfName:      "eth0",
		NetNSPath:   netnsDir + "/" + p.name,
		Prefix:      l.hosts[i].prefix,
		VNI:         vni,
		Subnet:      subnet,
		Addr:        netip.MustParsePrefix(addr),
	}
	l.names = append(l.names, HostVethName(p.spec.ContainerID, p.spec.IfName))
	if _, err := AttachPod(l.t.Context(), p.spec); err != nil {
		l.t.Fatal(err)
	}
	p.serve(l.t, p.name)
	return p
}

// serve answers every connection to the pod's address on servePort with
// identity.
func (p *pod) serve(t *testing.T, identity string) {
	t.Helper()
	var ln net.Listener
	err := inNamespace(p.ns, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(p.spec.Addr.Addr(), servePort).String())
		return err
	})
	if err != nil {
		t.Fatalf("listening in %s: %v", p.name, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(identity))
			_ = c.Close()
		}
	}()
}

// dial connects from the pod to addr:servePort and returns who answered.
func (p *pod) dial(ctx context.Context, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var c net.Conn
	err := inNamespace(p.ns, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", net.JoinHostPort(addr, strconv.Itoa(servePort)))
		return err
	})
	if err != nil {
		return "", err
	}
	defer func() { _ = c.Close() }()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// requireReach waits until from, dialing addr, is answered by to.
func requireReach(t *testing.T, from *pod, addr string, to *pod) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to reach %s at %s", from.name, to.name, addr), func() error {
		got, err := from.dial(t.Context(), addr)
		if err == nil && got != to.name {
			t.Fatalf("%s dialing %s reached %s, want %s", from.name, addr, got, to.name)
		}
		return err
	})
}

// waitFor polls cond until it returns nil, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		// A failed dial can return at once while a path comes up (carrier
		// pending on a new veth): poll at the next tick rather than spin.
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-tick.C:
		}
	}
}

// requireNoReach fails if from, dialing addr, is answered by anyone.
func requireNoReach(t *testing.T, from *pod, addr string) {
	t.Helper()
	if got, err := from.dial(t.Context(), addr); err == nil {
		t.Fatalf("%s dialing %s reached %s, want no answer", from.name, addr, got)
	}
}

// inRouter runs f with a netlink handle in host i's router namespace of a VNI.
func (l *lab) inRouter(t *testing.T, i int, vni uint32, f func(h *netlink.Handle)) {
	t.Helper()
	ns, err := openNamedNS(RouterNS(l.hosts[i].prefix, vni))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ns.Close() }()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	f(h)
}

func mustLink(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("finding %s: %v", name, err)
	}
	return link
}

func linkExists(t *testing.T, h *netlink.Handle, name string) bool {
	t.Helper()
	_, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return false
	}
	if err != nil {
		t.Fatalf("finding %s: %v", name, err)
	}
	return true
}

func routerNSExists(t *testing.T, name string) bool {
	t.Helper()
	names, err := listNamedNS()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}
