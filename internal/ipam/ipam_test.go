package ipam_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fornax-edge/fornax/internal/ipam"
	"github.com/fornax-edge/fornax/internal/netplane"
)

func pool(t *testing.T, root, subnet, cidr string) *ipam.Pool {
	t.Helper()
	p, err := ipam.Store{Root: root}.Pool(subnet, netip.MustParsePrefix(cidr))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func allocate(t *testing.T, p *ipam.Pool, id string) ipam.Allocation {
	t.Helper()
	a, err := p.Allocate(id, "eth0", nil)
	if err != nil {
		t.Fatalf("allocating for %s: %v", id, err)
	}
	return a
}

func TestAllocateUntilFull(t *testing.T) {
	cidr := netip.MustParsePrefix("10.1.1.0/29")
	p := pool(t, t.TempDir(), "blue", cidr.String())
	var got []string
	for i := range 5 {
		a := allocate(t, p, fmt.Sprintf("c%d", i))
		if a.Addr == netplane.GatewayAddr(cidr) {
			t.Fatalf("handed out the gateway %s", a.Addr)
		}
		if a.Prefix().String() != a.Addr.String()+"/29" || a.Subnet != "blue" || a.CIDR != cidr {
			t.Errorf("allocation %+v: prefix %s", a, a.Prefix())
		}
		got = append(got, a.Addr.String())
	}
	if want := "10.1.1.2 10.1.1.3 10.1.1.4 10.1.1.5 10.1.1.6"; strings.Join(got, " ") != want {
		t.Errorf("allocated %v, want %s (never the network, gateway or broadcast address)", got, want)
	}
	_, err := p.Allocate("c5", "eth0", nil)
	if !errors.Is(err, ipam.ErrFull) {
		t.Fatalf("allocating from a full subnet: %v, want ErrFull", err)
	}
	if want := "subnet blue (10.1.1.0/29) has no free address: 5 of 5 in use"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestAllocateIsIdempotent(t *testing.T) {
	p := pool(t, t.TempDir(), "blue", "10.1.1.0/24")
	a, err := p.Allocate("c1", "eth0", json.RawMessage(`{"vni":7}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Allocate("c1", "eth0", json.RawMessage(`{"vni":8}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.Addr != b.Addr || string(b.Data) != `{"vni":8}` {
		t.Errorf("second allocation %s %s, want %s with the new data", b.Addr, b.Data, a.Addr)
	}
	got, ok, err := p.Get("c1", "eth0")
	if err != nil || !ok || got.Addr != a.Addr || string(got.Data) != `{"vni":8}` {
		t.Errorf("Get = %+v, %t, %v", got, ok, err)
	}
	// Another interface of the same container is another holder.
	d, err := p.Allocate("c1", "net1", nil)
	if err != nil || d.Addr == a.Addr {
		t.Errorf("c1/net1 got %s, %v; want an address of its own", d.Addr, err)
	}
	if _, ok, err := p.Get("c2", "eth0"); ok || err != nil {
		t.Errorf("Get of a container without an address: %t, %v", ok, err)
	}
}

func TestReleaseIsRoundRobin(t *testing.T) {
	p := pool(t, t.TempDir(), "blue", "10.1.1.0/29")
	a := allocate(t, p, "a")
	b := allocate(t, p, "b")
	if err := p.Release("a", "eth0"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := p.Get("a", "eth0"); ok {
		t.Error("a still holds an address after Release")
	}
	if err := p.Release("a", "eth0"); err != nil {
		t.Errorf("releasing twice: %v", err)
	}
	if err := p.Release("never", "eth0"); err != nil {
		t.Errorf("releasing what was never allocated: %v", err)
	}
	// a's address comes back only after every other one was handed out.
	var order []netip.Addr
	for i := range 4 {
		order = append(order, allocate(t, p, fmt.Sprintf("n%d", i)).Addr)
	}
	if order[0] == a.Addr || order[0] == b.Addr || order[3] != a.Addr {
		t.Errorf("after releasing %s (b holds %s) the next were %v; want it reused last", a.Addr, b.Addr, order)
	}
}

func TestAllocationsSurviveARestart(t *testing.T) {
	root := t.TempDir()
	p := pool(t, root, "blue", "10.1.1.0/24")
	a := allocate(t, p, "a")
	b := allocate(t, p, "b")
	if err := p.Release("a", "eth0"); err != nil {
		t.Fatal(err)
	}

	// A new process: a new Store on the same directory.
	p2 := pool(t, root, "blue", "10.1.1.0/24")
	got, ok, err := p2.Get("b", "eth0")
	if err != nil || !ok || got.Addr != b.Addr {
		t.Fatalf("after the restart b holds %v, %t, %v; want %s", got.Addr, ok, err, b.Addr)
	}
	if again := allocate(t, p2, "b"); again.Addr != b.Addr {
		t.Errorf("repeated allocation for b after the restart: %s, want %s", again.Addr, b.Addr)
	}
	// The round-robin pointer survived too: the next address follows b's,
	// and a's released one is not reused.
	if c := allocate(t, p2, "c"); c.Addr != b.Addr.Next() {
		t.Errorf("first allocation after the restart %s, want %s (a released %s)", c.Addr, b.Addr.Next(), a.Addr)
	}
	all, err := p2.List()
	if err != nil || len(all) != 2 {
		t.Errorf("List = %v, %v; want b and c", all, err)
	}
}

func TestStoreFindsAcrossSubnets(t *testing.T) {
	root := t.TempDir()
	s := ipam.Store{Root: root}
	if all, err := s.List(); err != nil || len(all) != 0 {
		t.Fatalf("List of a root that does not exist yet: %v, %v", all, err)
	}
	blue := pool(t, root, "blue", "10.1.1.0/24")
	red := pool(t, root, "red", "10.9.0.0/16")
	ab := allocate(t, blue, "a")
	if _, err := red.Allocate("a", "net1", json.RawMessage(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	allocate(t, red, "b")

	found, err := s.Find("a", "eth0")
	if err != nil || len(found) != 1 || found[0].Addr != ab.Addr || found[0].Subnet != "blue" {
		t.Fatalf("Find(a, eth0) = %+v, %v", found, err)
	}
	all, err := s.List()
	if err != nil || len(all) != 3 {
		t.Fatalf("List = %+v, %v; want 3", all, err)
	}
	if err := s.Release(found[0]); err != nil {
		t.Fatal(err)
	}
	if found, _ := s.Find("a", "eth0"); len(found) != 0 {
		t.Errorf("a/eth0 still holds %+v", found)
	}

	// Releasing a stale Allocation (its address was handed on since) leaves
	// the new holder alone.
	reused := allocate(t, pool(t, root, "tiny", "10.2.2.0/30"), "x")
	if err := pool(t, root, "tiny", "10.2.2.0/30").Release("x", "eth0"); err != nil {
		t.Fatal(err)
	}
	y := allocate(t, pool(t, root, "tiny", "10.2.2.0/30"), "y")
	if y.Addr != reused.Addr {
		t.Fatalf("a /30 has one usable address; got %s and %s", reused.Addr, y.Addr)
	}
	if err := s.Release(reused); err != nil {
		t.Fatal(err)
	}
	if found, _ := s.Find("y", "eth0"); len(found) != 1 {
		t.Errorf("releasing x's stale allocation freed y's address")
	}
}

func TestDamagedRecordKeepsItsAddress(t *testing.T) {
	root := t.TempDir()
	p := pool(t, root, "blue", "10.1.1.0/29")
	allocate(t, p, "a") // creates the directory
	if err := os.WriteFile(filepath.Join(root, "blue", "10.1.1.3"), []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "blue", ".tmp-123"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b := allocate(t, p, "b"); b.Addr.String() != "10.1.1.4" {
		t.Errorf("b got %s, want 10.1.1.4 (10.1.1.3's record is damaged, so held)", b.Addr)
	}
	if _, err := os.Stat(filepath.Join(root, "blue", ".tmp-123")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead writer's temporary file is still there: %v", err)
	}
	all, err := ipam.Store{Root: root}.List()
	if err != nil {
		t.Fatal(err)
	}
	var damaged *ipam.Allocation
	for i, a := range all {
		if a.Addr.String() == "10.1.1.3" {
			damaged = &all[i]
		}
	}
	if damaged == nil || damaged.ContainerID != "" || damaged.Subnet != "blue" {
		t.Fatalf("the damaged record lists as %+v", damaged)
	}
	if err := (ipam.Store{Root: root}).Release(*damaged); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "blue", "10.1.1.3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the damaged record survived its release: %v", err)
	}
}

func TestSubnetRecreatedWithAnotherRange(t *testing.T) {
	root := t.TempDir()
	old := allocate(t, pool(t, root, "blue", "10.1.1.0/24"), "a")
	cur := allocate(t, pool(t, root, "blue", "10.7.0.0/24"), "a")
	if !netip.MustParsePrefix("10.7.0.0/24").Contains(cur.Addr) {
		t.Fatalf("a got %s, want an address of the new range", cur.Addr)
	}
	found, err := ipam.Store{Root: root}.Find("a", "eth0")
	if err != nil || len(found) != 1 || found[0].Addr != cur.Addr {
		t.Errorf("a holds %+v, %v; want only %s (not %s of the old range)", found, err, cur.Addr, old.Addr)
	}
}

func TestInvalidInput(t *testing.T) {
	s := ipam.Store{Root: t.TempDir()}
	for _, tc := range []struct{ subnet, cidr, want string }{
		{"", "10.1.1.0/24", "invalid subnet name"},
		{"../etc", "10.1.1.0/24", "invalid subnet name"},
		{".hidden", "10.1.1.0/24", "invalid subnet name"},
		{"a/b", "10.1.1.0/24", "invalid subnet name"},
		{"blue", "10.1.1.0/31", "subnet blue: CIDR 10.1.1.0/31 leaves no address for pods"},
		{"blue", "10.1.1.9/24", "not a network address"},
	} {
		_, err := s.Pool(tc.subnet, netip.MustParsePrefix(tc.cidr))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Pool(%q, %s) = %v, want %q", tc.subnet, tc.cidr, err, tc.want)
		}
	}
	p := pool(t, s.Root, "blue", "10.1.1.0/24")
	if _, err := p.Allocate("", "eth0", nil); err == nil {
		t.Error("allocated for an empty container ID")
	}
	if _, err := p.Allocate("c", "eth0", json.RawMessage("{")); err == nil {
		t.Error("allocated with data that is not JSON")
	}
}

// checkUnique fails the test if two holders got one address.
func checkUnique(t *testing.T, root string, wantN int) {
	t.Helper()
	all, err := ipam.Store{Root: root}.List()
	if err != nil {
		t.Fatal(err)
	}
	holders := map[string]bool{}
	addrs := map[netip.Addr]string{}
	for _, a := range all {
		h := a.ContainerID + "/" + a.IfName
		if prev, ok := addrs[a.Addr]; ok {
			t.Errorf("%s given to %s and %s", a.Addr, prev, h)
		}
		if holders[h] {
			t.Errorf("%s holds two addresses", h)
		}
		addrs[a.Addr], holders[h] = h, true
	}
	if len(all) != wantN {
		t.Errorf("%d allocations on disk, want %d", len(all), wantN)
	}
}

func TestConcurrentGoroutines(t *testing.T) {
	root := t.TempDir()
	const n = 80 // more than the 61 usable addresses of a /26
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			// Each has a Pool of its own, as separate plugin processes do.
			p, err := ipam.Store{Root: root}.Pool("blue", netip.MustParsePrefix("10.1.1.0/26"))
			if err == nil {
				_, err = p.Allocate(fmt.Sprintf("c%d", i), "eth0", nil)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	full := 0
	for _, err := range errs {
		switch {
		case errors.Is(err, ipam.ErrFull):
			full++
		case err != nil:
			t.Error(err)
		}
	}
	if full != n-61 {
		t.Errorf("%d allocations failed as full, want %d", full, n-61)
	}
	checkUnique(t, root, 61)
}

// TestConcurrentProcesses runs allocators in separate processes (this test
// binary, re-executed), as concurrent CNI invocations are.
func TestConcurrentProcesses(t *testing.T) {
	if root := os.Getenv("IPAM_TEST_ROOT"); root != "" {
		allocateInChild(root, os.Getenv("IPAM_TEST_CHILD"))
		return
	}
	root := t.TempDir()
	const procs, each = 8, 20
	cmds := make([]*exec.Cmd, procs)
	outs := make([]strings.Builder, procs)
	for i := range procs {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestConcurrentProcesses$")
		cmds[i].Env = append(os.Environ(), "IPAM_TEST_ROOT="+root, "IPAM_TEST_CHILD="+strconv.Itoa(i))
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("child %d: %v\n%s", i, err, outs[i].String())
		}
	}
	checkUnique(t, root, procs*each)
}

func allocateInChild(root, child string) {
	p, err := ipam.Store{Root: root}.Pool("blue", netip.MustParsePrefix("10.1.0.0/24"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for j := range 20 {
		if _, err := p.Allocate(fmt.Sprintf("p%s-%d", child, j), "eth0", nil); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
}
