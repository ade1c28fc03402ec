package cni_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fornax-edge/fornax/internal/cni"
	"github.com/fornax-edge/fornax/internal/ipam"
	"github.com/fornax-edge/fornax/internal/netlab"
	"github.com/fornax-edge/fornax/internal/netplane"
)

// The test below drives the real fornax-cni binary through libcni, as a
// container runtime does, against a real API server and a router namespace
// built by netplane's Reconciler. Its namespaces are named
// "fxcni<pid>-...", so a killed run's leftovers are recognised and swept.

const (
	vni       = 4242
	subnetA   = "blue-a"
	cidrA     = "10.77.1.0/29" // 5 addresses for pods: .2 to .6
	gatewayA  = "10.77.1.1"
	network   = "fornax-test"
	ifName    = "eth0"
	echoPort  = 7000
	nsRunDir  = "/run/netns"
	nsPattern = `^fxcni([0-9]+)-`
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: network namespaces, veths and bridges need root (CI runs this test as root)")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		t.Skipf("skipping: this kernel has no network namespaces: %v", err)
	}
}

// lab is the machine side of the test: the plugin binary, a "host"
// namespace holding the gateway's underlay, the router namespace that
// netplane builds for the VPC, and the pods' namespaces.
type lab struct {
	t        *testing.T
	base     string // of every namespace name
	binDir   string
	dataDir  string
	hostNS   netns.NsHandle
	rec      *netplane.Reconciler
	conflist *libcni.NetworkConfigList
	rt       *libcni.CNIConfig
}

func newLab(t *testing.T, kubeconfig string) *lab {
	t.Helper()
	sweepDeadRuns(t)
	l := &lab{t: t, base: fmt.Sprintf("fxcni%d", os.Getpid()), binDir: t.TempDir(), dataDir: filepath.Join(t.TempDir(), "ipam")}
	t.Cleanup(l.close)

	build := exec.CommandContext(t.Context(), "go", "build", "-o", filepath.Join(l.binDir, "fornax-cni"), "../../cmd/fornax-cni")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building fornax-cni: %v\n%s", err, out)
	}

	// The gateway's host: a namespace with the underlay address on a
	// dummy link, so that the Reconciler's VXLAN device has a home.
	var err error
	if l.hostNS, err = netlab.NewNamedNS(l.base + "-host"); err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(l.hostNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// A veth pair, as this kernel may have no dummy links.
	ul := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ul0", MTU: 1500}, PeerName: "ul1"}
	if err := h.LinkAdd(ul); err != nil {
		t.Fatalf("creating the underlay link: %v", err)
	}
	if err := h.AddrAdd(ul, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatalf("addressing the underlay link: %v", err)
	}
	for _, name := range []string{"lo", "ul0", "ul1"} {
		if link, err := h.LinkByName(name); err != nil {
			t.Fatal(err)
		} else if err := h.LinkSetUp(link); err != nil {
			t.Fatalf("setting %s up: %v", name, err)
		}
	}
	l.rec = netplane.New(l.hostNS)
	spec := netplane.Spec{Prefix: l.base, Underlay: netip.MustParseAddr("192.0.2.1"), VPCs: []netplane.VPC{{
		Name: "blue", VNI: vni, Subnets: []netplane.Subnet{{Name: subnetA, CIDR: netip.MustParsePrefix(cidrA)}},
	}}}
	if _, err := l.rec.Apply(t.Context(), spec); err != nil {
		t.Fatalf("building the router namespace: %v", err)
	}

	l.conflist = l.config(kubeconfig)
	l.rt = l.runtime()
	return l
}

// config is the network configuration a runtime would read from
// /etc/cni/net.d.
func (l *lab) config(kubeconfig string) *libcni.NetworkConfigList {
	l.t.Helper()
	list, err := libcni.NetworkConfFromBytes(fmt.Appendf(nil, `{
  "cniVersion": "1.1.0",
  "name": %q,
  "plugins": [{"type": "fornax-cni", "kubeconfig": %q, "dataDir": %q, "routerPrefix": %q}]
}`, network, kubeconfig, l.dataDir, l.base))
	if err != nil {
		l.t.Fatal(err)
	}
	return list
}

// runtime is a container runtime's libcni, with a cache of its own (a new
// one is a runtime that lost its state).
func (l *lab) runtime() *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir([]string{l.binDir}, l.t.TempDir(), nil)
}

func (l *lab) close() {
	t := l.t
	if l.rec != nil {
		if err := l.rec.Teardown(context.Background(), l.base); err != nil {
			t.Errorf("tearing down the router namespace: %v", err)
		}
	}
	if l.hostNS.IsOpen() {
		_ = l.hostNS.Close()
	}
	entries, _ := os.ReadDir(nsRunDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), l.base+"-") {
			if err := netns.DeleteNamed(e.Name()); err != nil {
				t.Errorf("removing namespace %s: %v", e.Name(), err)
			}
		}
	}
	entries, _ = os.ReadDir(nsRunDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), l.base+"-") {
			t.Errorf("left behind: %s/%s", nsRunDir, e.Name())
		}
	}
}

// sweepDeadRuns removes the namespaces of test runs that were killed.
func sweepDeadRuns(t *testing.T) {
	re := regexp.MustCompile(nsPattern)
	entries, _ := os.ReadDir(nsRunDir)
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if err := netns.DeleteNamed(e.Name()); err != nil {
			t.Logf("sweeping %s: %v", e.Name(), err)
		}
	}
}

// pod is a pod's network namespace and what the runtime tells the plugin
// about it.
type pod struct {
	name string
	path string
	rt   *libcni.RuntimeConf
}

func (l *lab) newPod(name string) *pod {
	l.t.Helper()
	nsName := l.base + "-pod-" + name
	h, err := netlab.NewNamedNS(nsName)
	if err != nil {
		l.t.Fatal(err)
	}
	_ = h.Close()
	path := filepath.Join(nsRunDir, nsName)
	return &pod{name: name, path: path, rt: &libcni.RuntimeConf{
		ContainerID: "ctr-" + name,
		NetNS:       path,
		IfName:      ifName,
		Args:        [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", name}},
	}}
}

func (l *lab) add(p *pod) (*types100.Result, error) {
	r, err := l.rt.AddNetworkList(l.t.Context(), l.conflist, p.rt)
	if err != nil {
		return nil, err
	}
	return types100.GetResult(r)
}

func (l *lab) mustAdd(p *pod) netip.Prefix {
	l.t.Helper()
	r, err := l.add(p)
	if err != nil {
		l.t.Fatalf("ADD of pod %s: %v", p.name, err)
	}
	if len(r.IPs) != 1 {
		l.t.Fatalf("ADD of pod %s: IPs %v", p.name, r.IPs)
	}
	addr, ok := netip.AddrFromSlice(r.IPs[0].Address.IP.To4())
	ones, _ := r.IPs[0].Address.Mask.Size()
	if !ok {
		l.t.Fatalf("ADD of pod %s: address %v", p.name, r.IPs[0].Address)
	}
	return netip.PrefixFrom(addr, ones)
}

func (l *lab) del(p *pod) {
	l.t.Helper()
	if err := l.rt.DelNetworkList(l.t.Context(), l.conflist, p.rt); err != nil {
		l.t.Fatalf("DEL of pod %s: %v", p.name, err)
	}
}

// held is the pod's allocation on disk.
func (l *lab) held(p *pod) []ipam.Allocation {
	l.t.Helper()
	a, err := ipam.Store{Root: l.dataDir}.Find(p.rt.ContainerID, ifName)
	if err != nil {
		l.t.Fatal(err)
	}
	return a
}

// inPod runs f with a netlink handle in the pod's namespace.
func inPod(t *testing.T, p *pod, f func(h *netlink.Handle, eth netlink.Link) error) error {
	t.Helper()
	return netlab.WithNetlink(p.path, func(h *netlink.Handle) error {
		eth, err := h.LinkByName(ifName)
		if err != nil {
			return err
		}
		return f(h, eth)
	})
}

// checkWired asserts what a pod sees of its attachment: the address on its
// interface, and a default route via the gateway.
func checkWired(t *testing.T, p *pod, want netip.Prefix) {
	t.Helper()
	err := inPod(t, p, func(h *netlink.Handle, eth netlink.Link) error {
		addrs, err := h.AddrList(eth, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var have []string
		for _, a := range addrs {
			have = append(have, a.IPNet.String())
		}
		if len(have) != 1 || have[0] != want.String() {
			return fmt.Errorf("%s has addresses %v, want %s", ifName, have, want)
		}
		routes, err := h.RouteList(eth, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == gatewayA {
				return nil
			}
		}
		return fmt.Errorf("no default route via %s in %v", gatewayA, routes)
	})
	if err != nil {
		t.Errorf("pod %s: %v", p.name, err)
	}
}

// echo listens in the pod's namespace and echoes what it reads.
func echo(t *testing.T, p *pod, addr netip.Addr) {
	t.Helper()
	ln, err := netlab.ListenIn(p.path, "tcp", netip.AddrPortFrom(addr, echoPort).String())
	if err != nil {
		t.Fatalf("listening in pod %s: %v", p.name, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// talk connects from the pod's namespace to addr's echo server and checks
// the answer.
func talk(t *testing.T, from *pod, to netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := netlab.DialIn(ctx, from.path, "tcp", netip.AddrPortFrom(to, echoPort).String())
	if err != nil {
		t.Fatalf("connecting from pod %s to %s: %v", from.name, to, err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg := "hello from " + from.name
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
		t.Fatalf("pod %s to %s: read %q, %v", from.name, to, buf, err)
	}
}

// routerHasVeth reports whether the router end of the pod's veth exists.
func (l *lab) routerHasVeth(t *testing.T, p *pod) bool {
	t.Helper()
	var found bool
	err := netlab.WithNetlink(filepath.Join("/run/netns", netplane.RouterNS(l.base, vni)), func(h *netlink.Handle) error {
		_, err := h.LinkByName(netplane.HostVethName(p.rt.ContainerID, ifName))
		found = err == nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// cniError is the plugin's error as the runtime gets it.
func cniError(t *testing.T, err error) *types.Error {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a CNI error", err, err)
	}
	return e
}

func TestPlugin(t *testing.T) {
	requireRoot(t)
	cluster := apiServer(t)
	cl := apiClient(t)
	createVPC(t, cl, "blue", "10.77.0.0/16", vni)
	createSubnet(t, cl, subnetA, "blue", cidrA)
	createVPC(t, cl, "green", "10.78.0.0/16", 0) // the hub has not given it a VNI
	createSubnet(t, cl, "green-a", "green", "10.78.1.0/24")
	for _, name := range []string{"a", "b", "d", "e", "f", "g", "h"} {
		createPod(t, cl, name, subnetA)
	}
	createPod(t, cl, "plain", "")
	createPod(t, cl, "greenpod", "green-a")

	l := newLab(t, cluster.Kubeconfig)
	ctx := t.Context()
	a, b := l.newPod("a"), l.newPod("b")

	// ADD wires the pod into the subnet.
	addrA := l.mustAdd(a)
	if !netip.MustParsePrefix(cidrA).Contains(addrA.Addr()) || addrA.Bits() != 29 || addrA.Addr().String() == gatewayA {
		t.Fatalf("pod a got %s, want a pod address of %s", addrA, cidrA)
	}
	checkWired(t, a, addrA)
	if again := l.mustAdd(a); again != addrA {
		t.Errorf("a repeated ADD got %s, the first %s", again, addrA)
	}
	checkWired(t, a, addrA)

	// Two pods get two addresses and reach each other over the bridge.
	addrB := l.mustAdd(b)
	if addrB == addrA {
		t.Fatalf("pods a and b both got %s", addrA)
	}
	checkWired(t, b, addrB)
	echo(t, b, addrB.Addr())
	echo(t, a, addrA.Addr())
	talk(t, a, addrB.Addr())
	talk(t, b, addrA.Addr())

	// The allocations are files: a runtime that restarted and lost its
	// cache gets the same address again.
	if _, err := os.Stat(filepath.Join(l.dataDir, subnetA, addrB.Addr().String())); err != nil {
		t.Errorf("no record of b's address: %v", err)
	}
	l.rt = l.runtime()
	if again := l.mustAdd(b); again != addrB {
		t.Errorf("ADD after a restart got %s, before %s", again, addrB)
	}

	// STATUS: the plugin is ready.
	if err := l.rt.GetStatusNetworkList(ctx, l.conflist); err != nil {
		t.Errorf("STATUS: %v", err)
	}

	// CHECK passes, and says precisely what broke once the address is gone.
	if err := l.rt.CheckNetworkList(ctx, l.conflist, a.rt); err != nil {
		t.Fatalf("CHECK of pod a: %v", err)
	}
	err := inPod(t, a, func(h *netlink.Handle, eth netlink.Link) error {
		return h.AddrDel(eth, &netlink.Addr{IPNet: &net.IPNet{IP: addrA.Addr().AsSlice(), Mask: net.CIDRMask(29, 32)}})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = l.rt.CheckNetworkList(ctx, l.conflist, a.rt)
	if err == nil {
		t.Fatal("CHECK passed after the pod's address was deleted")
	}
	if e := cniError(t, err); e.Code != cni.ErrDataplane || !strings.Contains(e.Msg, fmt.Sprintf("has addresses [], not %s", addrA)) {
		t.Errorf("CHECK error %v (code %d), want code %d naming the missing address", e, e.Code, cni.ErrDataplane)
	}

	// DEL removes the wiring and frees the address; again, and for a
	// container never seen, it succeeds.
	l.del(a)
	if held := l.held(a); len(held) != 0 {
		t.Errorf("a still holds %v after DEL", held)
	}
	if err := inPod(t, a, func(*netlink.Handle, netlink.Link) error { return nil }); err == nil {
		t.Errorf("pod a still has %s after DEL", ifName)
	}
	if l.routerHasVeth(t, a) {
		t.Error("the router end of a's veth is still there after DEL")
	}
	l.del(a)
	l.del(&pod{name: "nobody", rt: &libcni.RuntimeConf{ContainerID: "ctr-nobody", IfName: ifName,
		Args: [][2]string{{"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", "nobody"}}}})

	// a's address comes back once the others are handed out, then the
	// subnet is full.
	seen := map[netip.Prefix]string{addrB: "b"}
	var reused bool
	for _, name := range []string{"d", "e", "f", "g"} {
		got := l.mustAdd(l.newPod(name))
		if other, dup := seen[got]; dup {
			t.Fatalf("pods %s and %s both got %s", name, other, got)
		}
		seen[got] = name
		reused = reused || got == addrA
	}
	if !reused {
		t.Errorf("a's released address %s was not handed out again: %v", addrA, seen)
	}
	_, err = l.add(l.newPod("h"))
	if e := cniError(t, err); e.Code != cni.ErrSubnetFull || e.Msg != "subnet blue-a (10.77.1.0/29) has no free address: 5 of 5 in use" {
		t.Errorf("ADD to a full subnet: %v (code %d)", e, e.Code)
	}

	// Pods that cannot be placed get errors that say what to do.
	_, err = l.add(l.newPod("plain"))
	if e := cniError(t, err); e.Code != cni.ErrNoSubnetAnnotation || !strings.Contains(e.Msg, "has no annotation network.fornax.io/subnet: set it to the name of a Subnet") {
		t.Errorf("ADD of a pod without the annotation: %v (code %d)", e, e.Code)
	}
	_, err = l.add(l.newPod("greenpod"))
	if e := cniError(t, err); e.Code != cni.ErrVPCNotReady || e.Msg != "VPC green has no VNI yet: the root's hub allocates it; is this cluster connected?" {
		t.Errorf("ADD of a pod in a VPC without VNI: %v (code %d)", e, e.Code)
	}

	// DEL needs neither the API server nor the pod nor its namespace.
	podB := &corev1.Pod{}
	podB.Namespace, podB.Name = "default", "b"
	if err := cl.Delete(ctx, podB); err != nil {
		t.Fatal(err)
	}
	if err := netns.DeleteNamed(filepath.Base(b.path)); err != nil {
		t.Fatal(err)
	}
	l.conflist = l.config("/nonexistent/kubeconfig")
	l.del(b) // its NetNS names a namespace that is gone
	if held := l.held(b); len(held) != 0 {
		t.Errorf("b still holds %v after DEL", held)
	}
	waitFor(t, 10*time.Second, "the router end of b's veth to go", func() bool { return !l.routerHasVeth(t, b) })

	// GC, from a runtime that lost its cache, keeps the valid attachments
	// and removes the rest.
	l.rt = l.runtime()
	valid := []types.GCAttachment{{ContainerID: "ctr-d", IfName: ifName}, {ContainerID: "ctr-e", IfName: ifName}}
	if err := l.rt.GCNetworkList(ctx, l.conflist, &libcni.GCArgs{ValidAttachments: valid}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	all, err := ipam.Store{Root: l.dataDir}.List()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, a := range all {
		left = append(left, a.ContainerID)
	}
	if strings.Join(left, ",") != "ctr-d,ctr-e" && strings.Join(left, ",") != "ctr-e,ctr-d" {
		t.Errorf("after GC the holders are %v, want ctr-d and ctr-e", left)
	}
	for _, name := range []string{"f", "g"} {
		if l.routerHasVeth(t, &pod{rt: &libcni.RuntimeConf{ContainerID: "ctr-" + name}}) {
			t.Errorf("GC left pod %s's veth", name)
		}
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
