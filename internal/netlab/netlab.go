// Package netlab builds the network of a partition test: a "WAN" bridge in
// the host's network namespace and one network namespace per site, each
// joined to the bridge by a veth pair. Everything a site runs (its API
// server, datastore, controllers, kwok, fornaxd) runs in the site's
// namespace, so cutting the site's uplink cuts all of its traffic with the
// rest of the tree, as a pulled cable would.
//
// A cut sets the bridge end of the site's veth down: the site loses carrier,
// packets in both directions are dropped, TCP connections stall until their
// keepalives give up. Shape puts a token bucket filter on both ends (this
// kernel has no netem). The test process itself reaches a site through
// Site.DialContext, which opens sockets inside the site's namespace, so it
// can watch a site while its uplink is cut.
//
// Building the network needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); Check
// says why it cannot run otherwise.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Check returns an error saying why a WAN cannot be built here, or nil.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("building network namespaces, veths and bridges needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("this kernel has no network namespaces: %w", err)
	}
	return nil
}

// WAN is a bridge with sites attached, and the LANs behind some sites.
type WAN struct {
	prefix string
	wan    *Segment

	mu    sync.Mutex
	lans  []*Segment
	sites []*Site
	veths int // veth pairs made, for names
}

// Segment is one bridge of the network: the WAN, or a LAN behind a site
// (a middle cluster's children sit on its LAN, so cutting the middle's
// uplink leaves them connected to it). The host has .1 on every segment.
type Segment struct {
	// Name is "wan" or the LAN's owner.
	Name   string
	subnet *net.IPNet
	bridge netlink.Link
	next   int // the next site address
}

// HostIP is the host's address on the segment.
func (g *Segment) HostIP() net.IP { return nthIP(g.subnet, 1) }

// Site is a network namespace attached to a segment.
type Site struct {
	// Name is the site's name (the cluster's).
	Name string
	// IP is the site's address on its uplink segment.
	IP net.IP
	// LANIP is its address on the LAN behind it (AddLAN), if any.
	LANIP net.IP

	wan      *WAN
	nsName   string
	ns       netns.NsHandle
	hostVeth string // the bridge end of the uplink, in the host's namespace
	veths    []string
}

// New builds a bridge named after prefix (at most 8 characters, unique on
// the machine: e.g. "fx" and four hex digits) with the host at .1 of a /24
// chosen among 10.200.0.0/16–10.249.0.0/16 that no interface uses yet.
func New(prefix string) (*WAN, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	if len(prefix) == 0 || len(prefix) > 8 {
		return nil, fmt.Errorf("netlab: prefix %q must have 1 to 8 characters (interface names are limited to 15)", prefix)
	}
	subnet, err := freeSubnet(prefix)
	if err != nil {
		return nil, err
	}
	w := &WAN{prefix: prefix}
	if w.wan, err = newSegment("wan", prefix+"-wan", subnet); err != nil {
		return nil, err
	}
	return w, nil
}

func newSegment(name, bridge string, subnet *net.IPNet) (*Segment, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge, MTU: 1500}}
	if err := netlink.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("netlab: creating bridge %s: %w", br.Name, err)
	}
	g := &Segment{Name: name, subnet: subnet, bridge: br, next: 10}
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: g.HostIP(), Mask: subnet.Mask}}); err != nil {
		_ = netlink.LinkDel(br)
		return nil, fmt.Errorf("netlab: addressing bridge %s: %w", br.Name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		_ = netlink.LinkDel(br)
		return nil, fmt.Errorf("netlab: setting bridge %s up: %w", br.Name, err)
	}
	return g, nil
}

// NewForProcess builds a WAN whose names carry this process's id ("fx" and
// the pid in hex), after removing what dead processes left under that scheme
// (namespaces and bridges of a test binary that was killed).
func NewForProcess() (*WAN, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	sweep()
	return New(fmt.Sprintf("fx%x", os.Getpid()))
}

// sweep removes the namespaces and bridges of dead processes.
func sweep() {
	dead := func(prefix string) bool {
		pid, err := strconv.ParseInt(strings.TrimPrefix(prefix, "fx"), 16, 32)
		if err != nil || !strings.HasPrefix(prefix, "fx") {
			return false
		}
		return syscall.Kill(int(pid), 0) == syscall.ESRCH
	}
	if entries, err := os.ReadDir("/var/run/netns"); err == nil {
		for _, e := range entries {
			if prefix, _, ok := strings.Cut(e.Name(), "-"); ok && dead(prefix) {
				_ = netns.DeleteNamed(e.Name())
			}
		}
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if prefix, _, ok := strings.Cut(l.Attrs().Name, "-"); ok && dead(prefix) {
			_ = netlink.LinkDel(l)
		}
	}
}

// freeSubnet picks a /24 no address on this host falls in, starting from one
// derived from the prefix so that parallel test binaries rarely collide.
func freeSubnet(prefix string) (*net.IPNet, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("netlab: listing addresses: %w", err)
	}
	var h uint32 = 2166136261
	for _, c := range []byte(prefix) {
		h = (h ^ uint32(c)) * 16777619
	}
	for i := range uint32(50 * 256) {
		n := (h + i) % (50 * 256)
		subnet := &net.IPNet{IP: net.IPv4(10, byte(200+n/256), byte(n%256), 0).To4(), Mask: net.CIDRMask(24, 32)}
		used := false
		for _, a := range addrs {
			if subnet.Contains(a.IP) {
				used = true
				break
			}
		}
		if !used {
			return subnet, nil
		}
	}
	return nil, errors.New("netlab: every /24 of 10.200.0.0–10.249.255.0 is in use on this host")
}

func nthIP(subnet *net.IPNet, n int) net.IP {
	ip := make(net.IP, 4)
	copy(ip, subnet.IP.To4())
	ip[3] = byte(n)
	return ip
}

// HostIP is the host's address on the WAN.
func (w *WAN) HostIP() net.IP { return w.wan.HostIP() }

// AddSite creates a network namespace for a site on the WAN.
func (w *WAN) AddSite(name string) (*Site, error) { return w.AddSiteOn(name, nil) }

// AddSiteOn creates a network namespace for a site and attaches it to a
// segment (nil: the WAN); its address is the segment's next.
func (w *WAN) AddSiteOn(name string, on *Segment) (*Site, error) {
	if on == nil {
		on = w.wan
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if on.next > 250 {
		return nil, fmt.Errorf("netlab: segment %s is full", on.Name)
	}
	s := &Site{Name: name, IP: nthIP(on.subnet, on.next), wan: w, nsName: fmt.Sprintf("%s-%s", w.prefix, name)}
	on.next++
	ns, err := NewNamedNS(s.nsName)
	if err != nil {
		return nil, fmt.Errorf("netlab: site %s: creating network namespace %s: %w", name, s.nsName, err)
	}
	s.ns = ns
	if s.hostVeth, err = w.attach(s, on, s.IP); err != nil {
		s.destroy()
		return nil, fmt.Errorf("netlab: site %s: %w", name, err)
	}
	w.sites = append(w.sites, s)
	return s, nil
}

// AddLAN builds a LAN behind a site: a new segment the site is attached to
// (at .2) besides its uplink. Sites added on the LAN reach the site there,
// and nothing else but the host.
func (s *Site) AddLAN() (*Segment, error) {
	w := s.wan
	w.mu.Lock()
	defer w.mu.Unlock()
	subnet, err := freeSubnet(fmt.Sprintf("%s-%s", w.prefix, s.Name))
	if err != nil {
		return nil, err
	}
	lan, err := newSegment(s.Name, fmt.Sprintf("%s-l%d", w.prefix, len(w.lans)), subnet)
	if err != nil {
		return nil, err
	}
	w.lans = append(w.lans, lan)
	s.LANIP = nthIP(subnet, 2)
	if _, err := w.attach(s, lan, s.LANIP); err != nil {
		return nil, fmt.Errorf("netlab: LAN of %s: %w", s.Name, err)
	}
	return lan, nil
}

// attach joins a site to a segment with a new veth pair and returns the
// name of its host end. w.mu is held.
func (w *WAN) attach(s *Site, on *Segment, ip net.IP) (string, error) {
	hostVeth, siteVeth := fmt.Sprintf("%s-h%d", w.prefix, w.veths), fmt.Sprintf("%s-s%d", w.prefix, w.veths)
	w.veths++
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostVeth, MTU: 1500, MasterIndex: on.bridge.Attrs().Index}, PeerName: siteVeth}
	if err := netlink.LinkAdd(veth); err != nil {
		return "", fmt.Errorf("creating veth %s: %w", hostVeth, err)
	}
	s.veths = append(s.veths, hostVeth)
	peer, err := netlink.LinkByName(siteVeth)
	if err != nil {
		return "", fmt.Errorf("finding veth %s: %w", siteVeth, err)
	}
	if err := netlink.LinkSetNsFd(peer, int(s.ns)); err != nil {
		return "", fmt.Errorf("moving veth %s into %s: %w", siteVeth, s.nsName, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return "", fmt.Errorf("setting %s up: %w", hostVeth, err)
	}
	h, err := netlink.NewHandleAt(s.ns)
	if err != nil {
		return "", fmt.Errorf("opening netlink in %s: %w", s.nsName, err)
	}
	defer h.Close()
	for _, name := range []string{"lo", siteVeth} {
		l, err := h.LinkByName(name)
		if err != nil {
			return "", fmt.Errorf("finding %s in %s: %w", name, s.nsName, err)
		}
		if name == siteVeth {
			if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: on.subnet.Mask}}); err != nil {
				return "", fmt.Errorf("addressing %s: %w", name, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return "", fmt.Errorf("setting %s up in %s: %w", name, s.nsName, err)
		}
	}
	return hostVeth, nil
}

// NewNamedNS creates a named network namespace (under /var/run/netns, where
// nsenter and ip netns find it) on a thread that ends with it, so that no
// goroutine is left in it.
func NewNamedNS(name string) (netns.NsHandle, error) {
	type res struct {
		h   netns.NsHandle
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		h, err := netns.NewNamed(name)
		c <- res{h, err}
	}()
	r := <-c
	if r.err != nil {
		return netns.None(), fmt.Errorf("creating network namespace %s: %w", name, r.err)
	}
	return r.h, nil
}

// RunIn runs f on an OS thread inside the network namespace at path, as a
// process of that namespace would: a socket f opens and a program f starts
// (a CNI plugin) belong there. The thread goes back afterwards, or ends with
// its goroutine when it cannot.
func RunIn(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer func() { _ = orig.Close() }()
		target, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer func() { _ = target.Close() }()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("entering %s: %w", path, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leaving %s: %w", path, err))
			return // the thread stays locked and ends with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// NetNSPath is the site's namespace as a path, for nsenter --net.
func (s *Site) NetNSPath() string { return filepath.Join("/var/run/netns", s.nsName) }

// Listen listens inside the site's namespace.
func (s *Site) Listen(network, addr string) (net.Listener, error) {
	return ListenIn(s.NetNSPath(), network, addr)
}

// ListenIn listens inside the network namespace at path (a site's, a
// pod's): the listener stays there.
func ListenIn(path, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := RunIn(path, func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// Command returns argv that runs path with args inside the site's namespace.
func (s *Site) Command(path string, args ...string) []string {
	return append([]string{"nsenter", "--net=" + s.NetNSPath(), "--", path}, args...)
}

// DialContext opens a connection from inside the site's namespace: the test
// process reaches a site whose uplink is cut.
func (s *Site) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return DialIn(ctx, s.NetNSPath(), network, addr)
}

// DialIn opens a connection from inside the network namespace at path (a
// site's, a pod's), as a process there would.
func DialIn(ctx context.Context, path, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := RunIn(path, func() (err error) {
		// The connect may wait, on this same locked thread.
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil && conn != nil {
		_ = conn.Close()
		conn = nil
	}
	return conn, err
}

// Cut takes the site off the WAN: its end of the cable loses carrier.
func (s *Site) Cut() error {
	l, err := netlink.LinkByName(s.hostVeth)
	if err != nil {
		return fmt.Errorf("netlab: cutting %s: %w", s.Name, err)
	}
	if err := netlink.LinkSetDown(l); err != nil {
		return fmt.Errorf("netlab: cutting %s: %w", s.Name, err)
	}
	return nil
}

// Restore puts the site back on the WAN.
func (s *Site) Restore() error {
	l, err := netlink.LinkByName(s.hostVeth)
	if err != nil {
		return fmt.Errorf("netlab: restoring %s: %w", s.Name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("netlab: restoring %s: %w", s.Name, err)
	}
	return nil
}

// Shape limits the site's uplink to bitsPerSecond in each direction with a
// token bucket filter on both ends of its veth; 0 removes the limit.
func (s *Site) Shape(bitsPerSecond uint64) error {
	h, err := netlink.NewHandleAt(s.ns)
	if err != nil {
		return fmt.Errorf("netlab: shaping %s: %w", s.Name, err)
	}
	defer h.Close()
	for _, end := range []struct {
		h    *netlink.Handle
		name string
	}{{nil, s.hostVeth}, {h, strings.Replace(s.hostVeth, "-h", "-s", 1)}} {
		var l netlink.Link
		if end.h == nil {
			l, err = netlink.LinkByName(end.name)
		} else {
			l, err = end.h.LinkByName(end.name)
		}
		if err != nil {
			return fmt.Errorf("netlab: shaping %s: %w", s.Name, err)
		}
		if err := shape(end.h, l, bitsPerSecond); err != nil {
			return fmt.Errorf("netlab: shaping %s on %s: %w", s.Name, end.name, err)
		}
	}
	return nil
}

func shape(h *netlink.Handle, l netlink.Link, bitsPerSecond uint64) error {
	attrs := netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
	del, replace := netlink.QdiscDel, netlink.QdiscReplace
	if h != nil {
		del, replace = h.QdiscDel, h.QdiscReplace
	}
	if bitsPerSecond == 0 {
		err := del(&netlink.Tbf{QdiscAttrs: attrs})
		if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EINVAL) {
			return err
		}
		return nil // there was no filter
	}
	rate := bitsPerSecond / 8
	burst := uint32(max(rate/50, 3000)) // 20 ms of traffic, at least two full frames
	limit := uint32(max(rate/2, 16*1024))
	return replace(&netlink.Tbf{QdiscAttrs: attrs, Rate: rate, Limit: limit, Buffer: netlink.Xmittime(rate, burst)})
}

// Close removes every site's namespace and veth, and the bridge.
func (w *WAN) Close() error {
	w.mu.Lock()
	sites, lans := w.sites, w.lans
	w.sites, w.lans = nil, nil
	w.mu.Unlock()
	for _, s := range sites {
		s.destroy()
	}
	var errs []error
	for _, g := range append(lans, w.wan) {
		if err := netlink.LinkDel(g.bridge); err != nil {
			errs = append(errs, fmt.Errorf("netlab: removing bridge %s: %w", g.bridge.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Site) destroy() {
	for _, v := range s.veths {
		if l, err := netlink.LinkByName(v); err == nil {
			_ = netlink.LinkDel(l) // takes the peer with it
		}
	}
	if s.ns.IsOpen() {
		_ = s.ns.Close()
	}
	_ = netns.DeleteNamed(s.nsName)
}

// WithNetlink runs f with a netlink handle on the network namespace at path
// (/run/netns/NAME for a named one); the error wraps os.ErrNotExist when
// there is no such namespace.
func WithNetlink(path string, f func(h *netlink.Handle) error) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer func() { _ = ns.Close() }()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	return f(h)
}

// Remove deletes every named network namespace and every link of the host's
// namespace whose name starts with prefix and a dash: what a WAN made with
// New(prefix) left behind once its owner is gone (the demo's, after its
// processes are stopped), with whatever else was named under the prefix
// (gateway router and pod namespaces). It returns how many namespaces it
// removed.
func Remove(prefix string) (int, error) {
	if prefix == "" {
		return 0, errors.New("netlab: removing with an empty prefix would take every namespace")
	}
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("netlab: listing network namespaces: %w", err)
	}
	var errs []error
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix+"-") {
			continue
		}
		if err := netns.DeleteNamed(e.Name()); err != nil {
			errs = append(errs, fmt.Errorf("netlab: removing network namespace %s: %w", e.Name(), err))
			continue
		}
		n++
	}
	links, err := netlink.LinkList()
	if err != nil {
		return n, errors.Join(append(errs, fmt.Errorf("netlab: listing links: %w", err))...)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix+"-") {
			if err := netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
				errs = append(errs, fmt.Errorf("netlab: removing link %s: %w", l.Attrs().Name, err))
			}
		}
	}
	return n, errors.Join(errs...)
}

// Leftovers lists the named network namespaces and host links that Remove
// would delete.
func Leftovers(prefix string) []string {
	var left []string
	if entries, err := os.ReadDir("/var/run/netns"); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix+"-") {
				left = append(left, "netns "+e.Name())
			}
		}
	}
	if links, err := netlink.LinkList(); err == nil {
		for _, l := range links {
			if strings.HasPrefix(l.Attrs().Name, prefix+"-") {
				left = append(left, "link "+l.Attrs().Name)
			}
		}
	}
	return left
}
