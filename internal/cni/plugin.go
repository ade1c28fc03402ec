// Package cni is fornax-cni, the CNI plugin that attaches a pod to the VPC
// subnet its annotation network.fornax.io/subnet names (CNI spec 1.x:
// ADD, DEL, CHECK, STATUS, GC and VERSION).
//
// ADD reads the pod, its Subnet and the Subnet's VPC from the cluster's API
// server, allocates an address of the subnet (package ipam) and wires the
// pod with a veth pair into the subnet's bridge in the VPC's router
// namespace (package netplane). Everything DEL, CHECK and GC need is
// recorded with the address, so they work without the API server: a pod
// is detached even when the API server is unreachable or the pod object is
// gone.
//
// The plugin's stdout carries the CNI result or error only; diagnostics go
// to stderr.
package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fornax-edge/fornax/internal/ipam"
	"github.com/fornax-edge/fornax/internal/netplane"
)

// Fornax's error codes (the CNI spec leaves 100 and up to plugins). Errors
// the spec names use its codes: ErrTryAgainLater when the API server does
// not answer, ErrInvalidNetworkConfig, ErrUnknownContainer (CHECK of a
// container without an address), ErrPluginNotAvailable (STATUS).
const (
	// ErrNoSubnetAnnotation: the pod has no annotation
	// network.fornax.io/subnet.
	ErrNoSubnetAnnotation uint = 100
	// ErrSubnetNotFound: the annotation names no Subnet of this cluster,
	// or the Subnet's CIDR is unusable.
	ErrSubnetNotFound uint = 101
	// ErrVPCNotReady: the Subnet's VPC is not here or has no VNI yet.
	ErrVPCNotReady uint = 102
	// ErrSubnetFull: every address of the subnet is in use.
	ErrSubnetFull uint = 103
	// ErrPodNotFound: the API server has no such pod.
	ErrPodNotFound uint = 104
	// ErrAPI: the API server refused a request (forbidden, invalid).
	ErrAPI uint = 105
	// ErrDataplane: wiring the pod failed, or CHECK found it miswired.
	ErrDataplane uint = 106
	// ErrAddressStore: the address records could not be read or written.
	ErrAddressStore uint = 107
)

// About is what the plugin prints on stderr when run without CNI_COMMAND.
const About = "fornax-cni: attaches pods to Fornax VPC subnets (network.fornax.io/subnet annotation)"

// Versions are the CNI spec versions the plugin speaks.
var Versions = version.All

// Timeout bounds one invocation; the runtime may kill the plugin sooner.
const Timeout = 60 * time.Second

// Dataplane wires pods; netplane's functions by default.
type Dataplane interface {
	AttachPod(ctx context.Context, p netplane.Pod) (netplane.Attachment, error)
	DetachPod(ctx context.Context, p netplane.Pod) error
	CheckPod(ctx context.Context, p netplane.Pod) error
}

type netplaneDataplane struct{}

func (netplaneDataplane) AttachPod(ctx context.Context, p netplane.Pod) (netplane.Attachment, error) {
	return netplane.AttachPod(ctx, p)
}
func (netplaneDataplane) DetachPod(ctx context.Context, p netplane.Pod) error {
	return netplane.DetachPod(ctx, p)
}
func (netplaneDataplane) CheckPod(ctx context.Context, p netplane.Pod) error {
	return netplane.CheckPod(ctx, p)
}

// Plugin runs the CNI commands. The zero value is the real plugin; tests
// replace its seams.
type Plugin struct {
	// NewResolver opens the API for ADD; nil reads the API server of
	// cfg.Kubeconfig.
	NewResolver func(cfg *Config) (Resolver, error)
	// Dataplane wires pods; nil is netplane.
	Dataplane Dataplane
	// Stdout receives the CNI result; nil is os.Stdout.
	Stdout io.Writer
	// Log receives diagnostics; nil writes warnings to os.Stderr.
	Log *slog.Logger
}

// Funcs are the plugin's commands for skel.PluginMainFuncs.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, Status: p.Status, GC: p.GC}
}

func (p *Plugin) dataplane() Dataplane {
	if p.Dataplane == nil {
		return netplaneDataplane{}
	}
	return p.Dataplane
}

func (p *Plugin) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return p.Log
}

func (p *Plugin) resolver(cfg *Config) (Resolver, error) {
	if p.NewResolver != nil {
		return p.NewResolver(cfg)
	}
	r, err := NewAPIResolver(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// record is what the plugin keeps with an address (ipam.Allocation.Data):
// everything DEL, CHECK and GC need to find what ADD built.
type record struct {
	// Network is the network configuration's name; GC collects only its own.
	Network string `json:"network"`
	// Pod is namespace/name, for people reading the records.
	Pod    string `json:"pod,omitempty"`
	VPC    string `json:"vpc"`
	VNI    uint32 `json:"vni"`
	Prefix string `json:"routerPrefix"`
	// NetNS is the pod's network namespace at ADD.
	NetNS string `json:"netns"`
}

func recordOf(a ipam.Allocation) (record, error) {
	var r record
	if err := json.Unmarshal(a.Data, &r); err != nil || r.VNI == 0 || r.Prefix == "" {
		return r, fmt.Errorf("the record of %s in subnet %s is not fornax-cni's (data %q)", a.Addr, a.Subnet, a.Data)
	}
	return r, nil
}

// netplanePod is what netplane needs to (un)wire an allocation; netNS is
// the pod's namespace path, "" when the runtime no longer has it.
func netplanePod(a ipam.Allocation, r record, netNS string) netplane.Pod {
	return netplane.Pod{
		ContainerID: a.ContainerID,
		IfName:      a.IfName,
		NetNSPath:   netNS,
		Prefix:      r.Prefix,
		VNI:         r.VNI,
		Subnet:      a.Subnet,
		Addr:        a.Prefix(),
		Gateway:     netplane.GatewayAddr(a.CIDR),
	}
}

// Add attaches the pod: CNI ADD. Repeated for the same container and
// interface it returns the same address.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cfg, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	cargs, err := ParseArgs(args.Args)
	if err != nil {
		return err
	}
	namespace, name, err := cargs.Pod()
	if err != nil {
		return err
	}
	res, err := p.resolver(cfg)
	if err != nil {
		return err
	}
	pl, err := res.Resolve(ctx, namespace, name)
	if err != nil {
		return err
	}
	store := ipam.Store{Root: cfg.DataDir}
	pool, err := store.Pool(pl.Subnet, pl.CIDR)
	if err != nil {
		return types.NewError(ErrSubnetNotFound, err.Error(), "")
	}
	// An address held in another subnet (the annotation changed between
	// two ADDs) goes first.
	held, err := store.Find(args.ContainerID, args.IfName)
	if err != nil {
		return storeError(err)
	}
	for _, a := range held {
		if a.Subnet != pl.Subnet {
			if err := p.undo(ctx, store, a, args.Netns); err != nil {
				return err
			}
		}
	}

	rec := record{Network: cfg.Name, Pod: namespace + "/" + name, VPC: pl.VPC, VNI: pl.VNI, Prefix: cfg.RouterPrefix, NetNS: args.Netns}
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	alloc, err := pool.Allocate(args.ContainerID, args.IfName, data)
	if err != nil {
		if errors.Is(err, ipam.ErrFull) {
			return types.NewError(ErrSubnetFull, err.Error(), "")
		}
		return storeError(err)
	}
	pod := netplanePod(alloc, rec, args.Netns)
	att, err := p.dataplane().AttachPod(ctx, pod)
	if err != nil {
		// The runtime calls DEL after a failed ADD, but it may not: leave
		// neither a half-built veth nor a held address behind.
		if derr := p.dataplane().DetachPod(ctx, pod); derr != nil {
			p.log().Warn("cleaning up after a failed attach", "container", args.ContainerID, "ifName", args.IfName, "err", derr)
		}
		if rerr := store.Release(alloc); rerr != nil {
			p.log().Warn("releasing the address of a failed attach", "container", args.ContainerID, "address", alloc.Addr, "err", rerr)
		}
		return types.NewError(ErrDataplane, fmt.Sprintf("attaching pod %s/%s (%s in subnet %s, VPC %s, VNI %d): %v",
			namespace, name, alloc.Addr, pl.Subnet, pl.VPC, pl.VNI, err), "")
	}
	return p.print(result(args, alloc, att), cfg.CNIVersion)
}

// result is ADD's answer: the pod's interface, its address and the
// default route through the subnet's gateway.
func result(args *skel.CmdArgs, a ipam.Allocation, att netplane.Attachment) *types100.Result {
	gw := netplane.GatewayAddr(a.CIDR)
	idx := 0
	return &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{{Name: args.IfName, Mac: att.PodMAC.String(), Mtu: att.MTU, Sandbox: args.Netns}},
		IPs: []*types100.IPConfig{{
			Interface: &idx,
			Address:   net.IPNet{IP: a.Addr.AsSlice(), Mask: net.CIDRMask(a.CIDR.Bits(), 32)},
			Gateway:   gw.AsSlice(),
		}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gw.AsSlice()}},
	}
}

func (p *Plugin) print(r types.Result, cniVersion string) error {
	out := p.Stdout
	if out == nil {
		out = os.Stdout
	}
	v, err := r.GetAsVersion(cniVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, fmt.Sprintf("converting the result to CNI version %s: %v", cniVersion, err), "")
	}
	return v.PrintTo(out)
}

// undo detaches an allocation and releases its address. The address is
// kept when detaching fails, so that a retry finds what to clean.
func (p *Plugin) undo(ctx context.Context, store ipam.Store, a ipam.Allocation, netNS string) error {
	rec, err := recordOf(a)
	if err != nil {
		// Not ours to unwire (damaged, or written by something else):
		// release the address only.
		p.log().Warn("releasing an address without detaching", "address", a.Addr, "subnet", a.Subnet, "err", err)
	} else if err := p.dataplane().DetachPod(ctx, netplanePod(a, rec, netNS)); err != nil {
		return types.NewError(ErrDataplane, fmt.Sprintf("detaching %s/%s (%s in subnet %s): %v", a.ContainerID, a.IfName, a.Addr, a.Subnet, err), "")
	}
	if err := store.Release(a); err != nil {
		return storeError(err)
	}
	return nil
}

// Del detaches the pod and releases its address: CNI DEL. It needs no API
// server, and succeeds when there is nothing to remove.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cfg, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	store := ipam.Store{Root: cfg.DataDir}
	held, err := store.Find(args.ContainerID, args.IfName)
	if err != nil {
		return storeError(err)
	}
	var errs []error
	for _, a := range held {
		if err := p.undo(ctx, store, a, args.Netns); err != nil {
			errs = append(errs, err)
		}
	}
	return firstCNIError(errs)
}

// Check verifies the pod's attachment: CNI CHECK. It needs no API server.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cfg, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	held, err := ipam.Store{Root: cfg.DataDir}.Find(args.ContainerID, args.IfName)
	if err != nil {
		return storeError(err)
	}
	if len(held) == 0 {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf(
			"container %s has no address for interface %s in %s: ADD did not run, or DEL released it", args.ContainerID, args.IfName, cfg.DataDir), "")
	}
	if len(held) > 1 {
		return types.NewError(ErrAddressStore, fmt.Sprintf("container %s interface %s holds %d addresses in %s, want one", args.ContainerID, args.IfName, len(held), cfg.DataDir), "")
	}
	a := held[0]
	if err := checkPrevResult(cfg, a); err != nil {
		return err
	}
	rec, err := recordOf(a)
	if err != nil {
		return types.NewError(ErrAddressStore, err.Error(), "")
	}
	if err := p.dataplane().CheckPod(ctx, netplanePod(a, rec, args.Netns)); err != nil {
		return types.NewError(ErrDataplane, fmt.Sprintf("pod %s, container %s, interface %s (%s in subnet %s): %v", rec.Pod, args.ContainerID, args.IfName, a.Prefix(), a.Subnet, err), "")
	}
	return nil
}

// checkPrevResult compares the runtime's record of ADD's result with the
// allocation.
func checkPrevResult(cfg *Config, a ipam.Allocation) error {
	if cfg.PrevResult == nil {
		return nil
	}
	prev, err := types100.NewResultFromResult(cfg.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("converting prevResult: %v", err), "")
	}
	var got []string
	for _, ip := range prev.IPs {
		if ones, _ := ip.Address.Mask.Size(); ip.Address.IP.Equal(a.Addr.AsSlice()) && ones == a.CIDR.Bits() {
			return nil
		}
		got = append(got, ip.Address.String())
	}
	return types.NewError(ErrAddressStore, fmt.Sprintf("prevResult has addresses %v, but %s/%s holds %s", got, a.ContainerID, a.IfName, a.Prefix()), "")
}

// Status says whether ADD can work: CNI STATUS. It checks the local
// prerequisites (a writable data directory, a readable kubeconfig), not
// the API server, which ADD retries.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	cfg, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("creating the data directory: %v", err), "")
	}
	f, err := os.CreateTemp(cfg.DataDir, ".status-")
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("the data directory %s is not writable: %v", cfg.DataDir, err), "")
	}
	_ = f.Close()
	_ = os.Remove(f.Name())
	if cfg.Kubeconfig == "" {
		return types.NewError(types.ErrPluginNotAvailable, "the network configuration has no kubeconfig: set it to the path of a kubeconfig for this cluster's API server", "")
	}
	if _, err := clientcmd.LoadFromFile(cfg.Kubeconfig); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("loading kubeconfig %s: %v", filepath.Clean(cfg.Kubeconfig), err), "")
	}
	return nil
}

// GC detaches and releases every attachment of this network that the
// runtime no longer lists as valid: CNI GC.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cfg, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	valid := make(map[types.GCAttachment]bool, len(cfg.ValidAttachments))
	for _, a := range cfg.ValidAttachments {
		valid[a] = true
	}
	store := ipam.Store{Root: cfg.DataDir}
	all, err := store.List()
	if err != nil {
		return storeError(err)
	}
	var errs []error
	for _, a := range all {
		rec, err := recordOf(a)
		if err != nil || rec.Network != cfg.Name || valid[types.GCAttachment{ContainerID: a.ContainerID, IfName: a.IfName}] {
			continue
		}
		if err := p.undo(ctx, store, a, rec.NetNS); err != nil {
			errs = append(errs, err)
		}
	}
	return firstCNIError(errs)
}

func storeError(err error) error {
	return types.NewError(ErrAddressStore, err.Error(), "")
}

// firstCNIError returns nil, or a CNI error with the first error's code
// and every message.
func firstCNIError(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	code := types.ErrInternal
	var e *types.Error
	if errors.As(errs[0], &e) {
		code = e.Code
	}
	return types.NewError(code, errors.Join(errs...).Error(), "")
}
