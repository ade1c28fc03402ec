package netlab

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func newWAN(t *testing.T) *WAN {
	t.Helper()
	if err := Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	w, err := NewForProcess()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return w
}

// echo serves one site on addr (default: its uplink address, any port):
// whatever it reads it writes back. It returns the address it listens on.
func echo(t *testing.T, s *Site, addr ...string) string {
	t.Helper()
	at := net.JoinHostPort(s.IP.String(), "0")
	if len(addr) > 0 {
		at = addr[0]
	}
	l, err := s.Listen("tcp", at)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	return l.Addr().String()
}

func roundTrip(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error), addr string) error {
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	return err
}

// twoSites builds a WAN with sites a and b.
func twoSites(t *testing.T) (a, b *Site) {
	t.Helper()
	w := newWAN(t)
	a, err := w.AddSite("a")
	if err != nil {
		t.Fatal(err)
	}
	if b, err = w.AddSite("b"); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestSitesTalkOverTheWANAndCutsSeparateThem(t *testing.T) {
	a, b := twoSites(t)
	addr := echo(t, a)
	try := func(dial func(context.Context, string, string) (net.Conn, error)) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return roundTrip(ctx, dial, addr)
	}
	var host net.Dialer
	if err := try(b.DialContext); err != nil {
		t.Fatalf("b → a over the WAN: %v", err)
	}
	if err := try(host.DialContext); err != nil {
		t.Fatalf("host → a over the WAN: %v", err)
	}

	if err := a.Cut(); err != nil {
		t.Fatal(err)
	}
	if err := try(b.DialContext); err == nil {
		t.Fatal("b reached a while a's uplink was cut")
	}
	if err := try(a.DialContext); err != nil {
		t.Fatalf("a cannot reach itself while cut (the test watches a site through its namespace): %v", err)
	}

	if err := a.Restore(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for err := try(b.DialContext); err != nil; err = try(b.DialContext) {
		if time.Now().After(deadline) {
			t.Fatalf("b → a after restore: %v", err)
		}
	}
}

func TestShapeLimitsTheRate(t *testing.T) {
	a, b := twoSites(t)
	addr := echo(t, a)
	if err := a.Shape(256_000); err != nil {
		t.Fatal(err)
	}
	// 64 KiB there and back through a 256 kbit/s bucket: about 2 s each way.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := b.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	began := time.Now()
	payload := make([]byte, 64<<10)
	go func() { _, _ = c.Write(payload) }()
	if _, err := io.ReadFull(c, make([]byte, len(payload))); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	// Unshaped, this takes milliseconds; the bucket makes it take seconds.
	if took < time.Second {
		t.Errorf("64 KiB echoed through a 256 kbit/s uplink in %s: the shaper is not shaping", took)
	}
	t.Logf("64 KiB echoed through 256 kbit/s in %s", took)
	if err := a.Shape(0); err != nil {
		t.Fatal(err)
	}
	if err := a.Shape(0); err != nil {
		t.Fatalf("removing an absent shaper: %v", err)
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	if err := Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	w, err := New("fxtest")
	if err != nil {
		t.Fatal(err)
	}
	s, err := w.AddSite("x")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.NetNSPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace %s left: %v", s.NetNSPath(), err)
	}
	if _, err := net.InterfaceByName("fxtest-wan"); err == nil {
		t.Error("bridge fxtest-wan left")
	}
}

func TestCuttingAMiddleKeepsItsLAN(t *testing.T) {
	w := newWAN(t)
	root, err := w.AddSite("root")
	if err != nil {
		t.Fatal(err)
	}
	mid, err := w.AddSite("mid")
	if err != nil {
		t.Fatal(err)
	}
	lan, err := mid.AddLAN()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := w.AddSiteOn("leaf", lan)
	if err != nil {
		t.Fatal(err)
	}
	addr := echo(t, mid, ":0") // every address of mid: WAN and LAN
	_, port, _ := net.SplitHostPort(addr)
	try := func(from *Site, ip net.IP) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return roundTrip(ctx, from.DialContext, net.JoinHostPort(ip.String(), port))
	}
	if err := try(root, mid.IP); err != nil {
		t.Fatalf("root → mid: %v", err)
	}
	if err := try(leaf, mid.LANIP); err != nil {
		t.Fatalf("leaf → mid on its LAN: %v", err)
	}
	if err := try(leaf, root.IP); err == nil {
		t.Fatal("leaf reached root directly: a LAN must only reach its site")
	}
	if err := mid.Cut(); err != nil {
		t.Fatal(err)
	}
	if err := try(root, mid.IP); err == nil {
		t.Fatal("root reached mid while mid's uplink was cut")
	}
	if err := try(leaf, mid.LANIP); err != nil {
		t.Fatalf("leaf → mid on its LAN while mid's uplink is cut: %v", err)
	}
}

func TestRemoveTakesWhatAnOwnerLeftAndNothingElse(t *testing.T) {
	if err := Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	w, err := New("fxrm")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if _, err := w.AddSite(name); err != nil {
			_ = w.Close()
			t.Fatal(err)
		}
	}
	// What a gateway and a pod would add under the same prefix, and a
	// namespace whose name only starts like it.
	for _, name := range []string{"fxrm-gwa-vpc-1", "fxrm-pod-x", "fxrmx-keep"} {
		h, err := NewNamedNS(name)
		if err != nil {
			_ = w.Close()
			t.Fatal(err)
		}
		_ = h.Close()
	}
	t.Cleanup(func() { _, _ = Remove("fxrmx") })
	// The owner is gone: nothing calls w.Close.
	n, err := Remove("fxrm")
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("Remove removed %d namespaces, want 4 (two sites, a router, a pod)", n)
	}
	if left := Leftovers("fxrm"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	if _, err := os.Stat("/var/run/netns/fxrmx-keep"); err != nil {
		t.Errorf("Remove(fxrm) took fxrmx-keep: %v", err)
	}
	if _, err := Remove(""); err == nil {
		t.Error("Remove with an empty prefix did not refuse")
	}
}
