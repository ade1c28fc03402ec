package cni_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/fornax-edge/fornax/internal/cni"
	"github.com/fornax-edge/fornax/internal/ipam"
	"github.com/fornax-edge/fornax/internal/netplane"
)

// fakeResolver answers from a map of namespace/name.
type fakeResolver map[string]any // cni.Placement or error

func (f fakeResolver) Resolve(_ context.Context, namespace, name string) (cni.Placement, error) {
	switch v := f[namespace+"/"+name].(type) {
	case cni.Placement:
		return v, nil
	case error:
		return cni.Placement{}, v
	}
	return cni.Placement{}, types.NewError(cni.ErrPodNotFound, "no pod "+namespace+"/"+name, "")
}

// fakeDataplane records what it is asked and fails when told to.
type fakeDataplane struct {
	mu                          sync.Mutex
	attached                    map[string]netplane.Pod // by container/ifname
	detached                    []netplane.Pod
	attachErr, detachErr, chErr error
}

func key(p netplane.Pod) string { return p.ContainerID + "/" + p.IfName }

func (f *fakeDataplane) AttachPod(_ context.Context, p netplane.Pod) (netplane.Attachment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attachErr != nil {
		return netplane.Attachment{}, f.attachErr
	}
	if f.attached == nil {
		f.attached = map[string]netplane.Pod{}
	}
	f.attached[key(p)] = p
	return netplane.Attachment{HostVeth: netplane.HostVethName(p.ContainerID, p.IfName), PodMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, MTU: 1450}, nil
}

func (f *fakeDataplane) DetachPod(_ context.Context, p netplane.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detachErr != nil {
		return f.detachErr
	}
	delete(f.attached, key(p))
	f.detached = append(f.detached, p)
	return nil
}

func (f *fakeDataplane) CheckPod(_ context.Context, p netplane.Pod) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.attached[key(p)]; !ok {
		return fmt.Errorf("%s is not attached", key(p))
	}
	return f.chErr
}

var (
	blue  = cni.Placement{Subnet: "blue-a", CIDR: netip.MustParsePrefix("10.1.1.0/29"), VPC: "blue", VNI: 7}
	green = cni.Placement{Subnet: "green-a", CIDR: netip.MustParsePrefix("10.2.0.0/24"), VPC: "green", VNI: 9}
)

type env struct {
	t       *testing.T
	dir     string
	pods    fakeResolver
	dp      *fakeDataplane
	plugin  *cni.Plugin
	stdout  bytes.Buffer
	network string
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir(), pods: fakeResolver{"shop/a": blue, "shop/b": blue, "shop/g": green}, dp: &fakeDataplane{}, network: "fornax"}
	e.plugin = &cni.Plugin{
		NewResolver: func(*cni.Config) (cni.Resolver, error) { return e.pods, nil },
		Dataplane:   e.dp,
		Stdout:      &e.stdout,
	}
	return e
}

func (e *env) conf(extra string) []byte {
	return fmt.Appendf(nil, `{"cniVersion":"1.1.0","name":%q,"type":"fornax-cni","kubeconfig":"/nonexistent","dataDir":%q,"routerPrefix":"fxu"%s}`, e.network, e.dir, extra)
}

func (e *env) args(container, pod string) *skel.CmdArgs {
	return &skel.CmdArgs{
		ContainerID: container, IfName: "eth0", Netns: "/var/run/netns/" + container,
		Args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=" + pod, StdinData: e.conf(""),
	}
}

// add runs ADD and returns its result.
func (e *env) add(container, pod string) (*types100.Result, error) {
	e.stdout.Reset()
	if err := e.plugin.Add(e.args(container, pod)); err != nil {
		return nil, err
	}
	r, err := types100.NewResult(e.stdout.Bytes())
	if err != nil {
		e.t.Fatalf("ADD printed %q: %v", e.stdout.String(), err)
	}
	return types100.GetResult(r)
}

func (e *env) mustAdd(container, pod string) *types100.Result {
	e.t.Helper()
	r, err := e.add(container, pod)
	if err != nil {
		e.t.Fatalf("ADD %s (pod %s): %v", container, pod, err)
	}
	return r
}

func (e *env) held(container string) []ipam.Allocation {
	e.t.Helper()
	a, err := ipam.Store{Root: e.dir}.Find(container, "eth0")
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func TestAddReturnsTheAttachment(t *testing.T) {
	e := newEnv(t)
	r := e.mustAdd("c1", "a")
	if len(r.Interfaces) != 1 || r.Interfaces[0].Name != "eth0" || r.Interfaces[0].Mac != "02:00:00:00:00:01" ||
		r.Interfaces[0].Sandbox != "/var/run/netns/c1" || r.Interfaces[0].Mtu != 1450 {
		t.Errorf("interfaces %v", r.Interfaces)
	}
	if len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.1.1.2/29" || r.IPs[0].Gateway.String() != "10.1.1.1" ||
		r.IPs[0].Interface == nil || *r.IPs[0].Interface != 0 {
		t.Errorf("IPs %v", r.IPs)
	}
	if len(r.Routes) != 1 || r.Routes[0].Dst.String() != "0.0.0.0/0" || r.Routes[0].GW.String() != "10.1.1.1" {
		t.Errorf("routes %v", r.Routes)
	}
	p := e.dp.attached["c1/eth0"]
	want := netplane.Pod{ContainerID: "c1", IfName: "eth0", NetNSPath: "/var/run/netns/c1", Prefix: "fxu", VNI: 7, Subnet: "blue-a",
		Addr: netip.MustParsePrefix("10.1.1.2/29"), Gateway: netip.MustParseAddr("10.1.1.1")}
	if p != want {
		t.Errorf("attached %+v, want %+v", p, want)
	}
	// What DEL needs is on disk with the address.
	held := e.held("c1")
	if len(held) != 1 {
		t.Fatalf("held %v", held)
	}
	var rec map[string]any
	if err := json.Unmarshal(held[0].Data, &rec); err != nil {
		t.Fatal(err)
	}
	if rec["vni"] != float64(7) || rec["routerPrefix"] != "fxu" || rec["network"] != "fornax" || rec["pod"] != "shop/a" || rec["netns"] != "/var/run/netns/c1" {
		t.Errorf("record %v", rec)
	}
}

func TestAddResultInOlderVersions(t *testing.T) {
	e := newEnv(t)
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0"} {
		e.stdout.Reset()
		a := e.args("c1", "a")
		a.StdinData = fmt.Appendf(nil, `{"cniVersion":%q,"name":"fornax","type":"fornax-cni","dataDir":%q}`, v, e.dir)
		if err := e.plugin.Add(a); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		var out struct {
			CNIVersion string `json:"cniVersion"`
			IPs        []struct {
				Address string `json:"address"`
			} `json:"ips"`
		}
		if err := json.Unmarshal(e.stdout.Bytes(), &out); err != nil || out.CNIVersion != v || len(out.IPs) != 1 || out.IPs[0].Address != "10.1.1.2/29" {
			t.Errorf("%s: result %s (%v)", v, e.stdout.String(), err)
		}
	}
}

func TestAddIsIdempotent(t *testing.T) {
	e := newEnv(t)
	first := e.mustAdd("c1", "a")
	again := e.mustAdd("c1", "a")
	other := e.mustAdd("c2", "b")
	if again.IPs[0].Address.String() != first.IPs[0].Address.String() {
		t.Errorf("repeated ADD got %s, first %s", again.IPs[0].Address.String(), first.IPs[0].Address.String())
	}
	if other.IPs[0].Address.String() == first.IPs[0].Address.String() {
		t.Errorf("two containers got %s", first.IPs[0].Address.String())
	}
}

func TestAddErrors(t *testing.T) {
	e := newEnv(t)
	e.pods["shop/plain"] = types.NewError(cni.ErrNoSubnetAnnotation, "pod shop/plain has no annotation network.fornax.io/subnet", "")
	for _, tc := range []struct {
		name     string
		args     func(a *skel.CmdArgs)
		wantCode uint
		wantMsg  string
	}{
		{"the resolver's error passes", func(a *skel.CmdArgs) { a.Args = "K8S_POD_NAMESPACE=shop;K8S_POD_NAME=plain" }, cni.ErrNoSubnetAnnotation, "network.fornax.io/subnet"},
		{"no pod in CNI_ARGS", func(a *skel.CmdArgs) { a.Args = "" }, types.ErrInvalidEnvironmentVariables, "K8S_POD_NAMESPACE"},
		{"broken CNI_ARGS", func(a *skel.CmdArgs) { a.Args = "K8S_POD_NAME" }, types.ErrInvalidEnvironmentVariables, "CNI_ARGS"},
		{"broken config", func(a *skel.CmdArgs) { a.StdinData = []byte(`{`) }, types.ErrDecodingFailure, "network configuration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.args("c1", "a")
			tc.args(a)
			err := e.plugin.Add(a)
			if codeOf(err) != tc.wantCode || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %v (code %d), want code %d with %q", err, codeOf(err), tc.wantCode, tc.wantMsg)
			}
		})
	}
}

func TestAddWithoutKubeconfig(t *testing.T) {
	e := newEnv(t)
	e.plugin.NewResolver = nil // the real one
	a := e.args("c1", "a")
	a.StdinData = fmt.Appendf(nil, `{"cniVersion":"1.1.0","name":"fornax","type":"fornax-cni","dataDir":%q}`, e.dir)
	err := e.plugin.Add(a)
	if codeOf(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "no kubeconfig") {
		t.Errorf("error %v", err)
	}
	a.StdinData = e.conf("") // a kubeconfig that does not exist
	if err := e.plugin.Add(a); codeOf(err) != types.ErrInvalidNetworkConfig || !strings.Contains(err.Error(), "/nonexistent") {
		t.Errorf("error %v", err)
	}
}

func TestAddFailedAttachReleasesTheAddress(t *testing.T) {
	e := newEnv(t)
	e.dp.attachErr = errors.New("bridge missing")
	_, err := e.add("c1", "a")
	if codeOf(err) != cni.ErrDataplane || !strings.Contains(err.Error(), "bridge missing") || !strings.Contains(err.Error(), "shop/a") {
		t.Fatalf("error %v (code %d)", err, codeOf(err))
	}
	if held := e.held("c1"); len(held) != 0 {
		t.Errorf("the address is still held after a failed attach: %v", held)
	}
	if len(e.dp.detached) != 1 {
		t.Errorf("no clean-up after the failed attach: detached %v", e.dp.detached)
	}
}

func TestAddFullSubnet(t *testing.T) {
	e := newEnv(t)
	for i := range 5 { // a /29 has 5 addresses for pods
		e.mustAdd(fmt.Sprintf("c%d", i), "a")
	}
	_, err := e.add("c5", "a")
	if codeOf(err) != cni.ErrSubnetFull || err.Error() != "subnet blue-a (10.1.1.0/29) has no free address: 5 of 5 in use" {
		t.Errorf("error %v (code %d)", err, codeOf(err))
	}
}

func TestAddMovesToANewSubnet(t *testing.T) {
	e := newEnv(t)
	e.mustAdd("c1", "a")
	e.pods["shop/a"] = green // the annotation changed before a repeated ADD
	r := e.mustAdd("c1", "a")
	if !green.CIDR.Contains(netip.MustParseAddr(r.IPs[0].Address.IP.String())) {
		t.Errorf("ADD got %v, want an address of green", r.IPs[0].Address)
	}
	held := e.held("c1")
	if len(held) != 1 || held[0].Subnet != "green-a" {
		t.Errorf("held %v, want green's only", held)
	}
	if len(e.dp.detached) != 1 || e.dp.detached[0].Subnet != "blue-a" {
		t.Errorf("detached %v, want the blue attachment", e.dp.detached)
	}
}

func TestDelWorksOffline(t *testing.T) {
	e := newEnv(t)
	addr := e.mustAdd("c1", "a").IPs[0].Address.String()
	e.mustAdd("c2", "b")
	// DEL must not need the API server.
	e.plugin.NewResolver = func(*cni.Config) (cni.Resolver, error) {
		t.Error("DEL asked for the API")
		return nil, errors.New("no API")
	}
	a := e.args("c1", "a")
	a.Netns = "" // the runtime may no longer have it
	if err := e.plugin.Del(a); err != nil {
		t.Fatal(err)
	}
	if held := e.held("c1"); len(held) != 0 {
		t.Errorf("still held after DEL: %v", held)
	}
	want := netplane.Pod{ContainerID: "c1", IfName: "eth0", Prefix: "fxu", VNI: 7, Subnet: "blue-a",
		Addr: netip.MustParsePrefix(addr), Gateway: netip.MustParseAddr("10.1.1.1")}
	if len(e.dp.detached) != 1 || e.dp.detached[0] != want {
		t.Errorf("detached %+v, want %+v", e.dp.detached, want)
	}
	for _, c := range []string{"c1", "unknown"} {
		if err := e.plugin.Del(e.args(c, "a")); err != nil {
			t.Errorf("DEL of %s: %v", c, err)
		}
	}
	if len(e.dp.detached) != 1 {
		t.Errorf("DEL of what is gone detached again: %v", e.dp.detached)
	}
	if held := e.held("c2"); len(held) != 1 {
		t.Errorf("DEL of c1 touched c2: %v", held)
	}
	// DEL on a node where nothing was ever allocated.
	e2 := newEnv(t)
	if err := e2.plugin.Del(e2.args("c1", "a")); err != nil {
		t.Errorf("DEL with an empty data directory: %v", err)
	}
}

func TestDelKeepsTheAddressWhenDetachFails(t *testing.T) {
	e := newEnv(t)
	e.mustAdd("c1", "a")
	e.dp.detachErr = errors.New("netlink says no")
	err := e.plugin.Del(e.args("c1", "a"))
	if codeOf(err) != cni.ErrDataplane || !strings.Contains(err.Error(), "netlink says no") {
		t.Errorf("error %v (code %d)", err, codeOf(err))
	}
	if held := e.held("c1"); len(held) != 1 {
		t.Errorf("the address went with a failed detach: the retried DEL will not find what to clean")
	}
	e.dp.detachErr = nil
	if err := e.plugin.Del(e.args("c1", "a")); err != nil || len(e.held("c1")) != 0 {
		t.Errorf("the retried DEL: %v, held %v", err, e.held("c1"))
	}
}

func TestCheck(t *testing.T) {
	e := newEnv(t)
	err := e.plugin.Check(e.args("c1", "a"))
	if codeOf(err) != types.ErrUnknownContainer || !strings.Contains(err.Error(), "has no address for interface eth0") {
		t.Errorf("CHECK before ADD: %v (code %d)", err, codeOf(err))
	}
	e.mustAdd("c1", "a")
	prev := e.stdout.String()
	a := e.args("c1", "a")
	a.StdinData = e.conf(`,"prevResult":` + prev)
	if err := e.plugin.Check(a); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	e.dp.chErr = errors.New("eth0 has addresses [], not 10.1.1.2/29")
	err = e.plugin.Check(a)
	if codeOf(err) != cni.ErrDataplane || !strings.Contains(err.Error(), "eth0 has addresses [], not 10.1.1.2/29") || !strings.Contains(err.Error(), "shop/a") {
		t.Errorf("CHECK of a broken attachment: %v (code %d)", err, codeOf(err))
	}
	e.dp.chErr = nil
	a.StdinData = e.conf(`,"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.1.1.6/29"}]}`)
	if err := e.plugin.Check(a); err == nil || !strings.Contains(err.Error(), "prevResult has addresses [10.1.1.6/29], but c1/eth0 holds 10.1.1.2/29") {
		t.Errorf("CHECK with another prevResult: %v", err)
	}
}

func TestGC(t *testing.T) {
	e := newEnv(t)
	e.mustAdd("keep", "a")
	e.mustAdd("stale", "b")
	e.network = "other" // another network sharing the data directory
	e.mustAdd("theirs", "g")
	e.network = "fornax"

	a := &skel.CmdArgs{StdinData: e.conf(`,"cni.dev/valid-attachments":[{"containerID":"keep","ifname":"eth0"}]`)}
	if err := e.plugin.GC(a); err != nil {
		t.Fatal(err)
	}
	if len(e.held("keep")) != 1 || len(e.held("stale")) != 0 || len(e.held("theirs")) != 1 {
		t.Errorf("after GC: keep %v, stale %v, theirs %v", e.held("keep"), e.held("stale"), e.held("theirs"))
	}
	if len(e.dp.detached) != 1 || e.dp.detached[0].ContainerID != "stale" || e.dp.detached[0].NetNSPath != "/var/run/netns/stale" {
		t.Errorf("detached %+v", e.dp.detached)
	}
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := func(kubeconfig, dataDir string) *skel.CmdArgs {
		return &skel.CmdArgs{StdinData: fmt.Appendf(nil, `{"cniVersion":"1.1.0","name":"fornax","kubeconfig":%q,"dataDir":%q}`, kubeconfig, dataDir)}
	}
	if err := e.plugin.Status(conf(kubeconfig, filepath.Join(e.dir, "new"))); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	for _, tc := range []struct {
		args *skel.CmdArgs
		want string
	}{
		{conf("", e.dir), "no kubeconfig"},
		{conf("/nonexistent", e.dir), "/nonexistent"},
		{conf(kubeconfig, kubeconfig+"/ipam"), "data directory"},
	} {
		err := e.plugin.Status(tc.args)
		if codeOf(err) != types.ErrPluginNotAvailable || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("STATUS of %s: %v (code %d), want %q", tc.args.StdinData, err, codeOf(err), tc.want)
		}
	}
}
