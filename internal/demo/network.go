package demo

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/examples"
	"github.com/fornax-edge/fornax/internal/localcluster"
	"github.com/fornax-edge/fornax/internal/netlab"
)

// Network modes of Options.Network.
const (
	// NetworkAuto adds the network part when this process may build network
	// namespaces (root), and says why not otherwise.
	NetworkAuto = "auto"
	NetworkOn   = "on"
	NetworkOff  = "off"
)

// NetworkClusters run a gateway and get a subnet of the sample VPC
// (examples/network): two sites two levels below the root and one one level
// below.
var NetworkClusters = []string{"dublin", "factory-7", "us"}

// probePod is the pod the demo puts in each of NetworkClusters.
const probePod = "probe"

// NetPrefix names what the demo in dir builds in the kernel: its WAN bridge,
// veths and network namespaces (sites, gateway routers, pods) all start with
// it and a dash. Derived from the directory, so two demos (a user's and the
// test suite's) never share names; "fxdm" is not followed by a process id in
// hex, so netlab's sweep of dead test processes never takes it.
func NetPrefix(dir string) string {
	h := fnv.New32a()
	_, _ = io.WriteString(h, dir)
	return fmt.Sprintf("fxdm%04x", h.Sum32()&0xffff)
}

// networkWanted decides whether the demo builds its network, and prints why
// not when it does not.
func networkWanted(o Options) (bool, error) {
	switch o.Network {
	case NetworkOff:
		return false, nil
	case NetworkOn, NetworkAuto, "":
	default:
		return false, fmt.Errorf("--network %q: want auto, on or off", o.Network)
	}
	err := netlab.Check()
	if err == nil {
		_, err = cniPath(o)
	}
	if err == nil {
		return true, nil
	}
	if o.Network == NetworkOn {
		return false, fmt.Errorf("the demo's network (a VPC across %s): %w", strings.Join(NetworkClusters, ", "), err)
	}
	fmt.Fprintf(o.Out, "Leaving the network part out (%v).\n  Run the demo as root to add a VPC across %s, with pods talking through the gateways.\n",
		err, strings.Join(NetworkClusters, ", "))
	return false, nil
}

// cniPath finds fornax-cni next to the running program, else in the tools
// directory.
func cniPath(o Options) (string, error) {
	dir, err := binDir(o)
	if err != nil {
		return "", err
	}
	return findBinary("fornax-cni", dir)
}

// network is the demo's network: a WAN bridge with a site namespace per
// cluster, where the cluster's processes run, so that each gateway has an
// underlay of its own, as on separate machines.
type network struct {
	prefix string
	sites  map[string]*netlab.Site
	// addrs are the addresses of the probe pods, once connected.
	addrs map[string]netip.Addr
}

// buildNetwork makes the WAN and one site per cluster of Topology.
func buildNetwork(prefix string) (*network, error) {
	w, err := netlab.New(prefix)
	if err != nil {
		return nil, err
	}
	n := &network{prefix: prefix, sites: map[string]*netlab.Site{}, addrs: map[string]netip.Addr{}}
	for _, s := range Topology {
		if n.sites[s.Name], err = w.AddSite(s.Name); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// gatewayPrefix names the router namespaces of a cluster's gateway.
func (n *network) gatewayPrefix(cluster string) string { return n.prefix + "-gw-" + cluster }

// gatewayArgs are the fornaxd flags of a cluster's gateway role, or none.
func (n *network) gatewayArgs(cluster string) []string {
	if n == nil || !slices.Contains(NetworkClusters, cluster) {
		return nil
	}
	return []string{"--gateway-endpoint", n.sites[cluster].IP.String(), "--gateway-prefix", n.gatewayPrefix(cluster)}
}

// podNS is the network namespace of the probe pod of a cluster.
func (n *network) podNS(cluster string) string { return n.prefix + "-pod-" + cluster }

// probe is a pod of the demo wired into the VPC.
type probe struct {
	cluster string
	nsPath  string
	addr    netip.Addr
}

// connect applies the sample VPC at the root, puts a pod in each of
// NetworkClusters, wires it with fornax-cni as the node's container runtime
// would (libcni, from inside the cluster's site), then pings between them.
func (n *network) connect(ctx context.Context, o Options, dir string, byName map[string]*localcluster.Cluster) error {
	root := byName["root"]
	fmt.Fprintf(o.Out, "Applying the sample network at the root: VPC telemetry, a subnet in each of %s\n",
		strings.Join(NetworkClusters, ", "))
	if err := applyExample(ctx, o, dir, root, examples.Network, "network"); err != nil {
		return err
	}
	cni, err := cniPath(o)
	if err != nil {
		return err
	}
	probes := make([]*probe, 0, len(NetworkClusters))
	for _, name := range NetworkClusters {
		fmt.Fprintf(o.Out, "  %-12spod %s (%s: telemetry-%s), wired by fornax-cni\n", name, probePod, networkv1alpha1.AnnotationSubnet, name)
		p, err := n.addProbe(ctx, byName[name], filepath.Join(dir, name), cni)
		if err != nil {
			return fmt.Errorf("the probe pod of %s: %w", name, err)
		}
		probes = append(probes, p)
		n.addrs[name] = p.addr
	}
	fmt.Fprintf(o.Out, "Pinging between the pods, across the gateways\n")
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tADDRESS\tREPLY")
	for _, from := range probes {
		for _, to := range probes {
			if from == to {
				continue
			}
			rtt, err := waitPing(ctx, from, to.addr)
			if err != nil {
				_ = tw.Flush()
				return fmt.Errorf("pod %s of %s pinging pod %s of %s at %s: %w (gateway logs: %s/<cluster>/logs/fornaxd.log)",
					probePod, from.cluster, probePod, to.cluster, to.addr, err, dir)
			}
			fmt.Fprintf(tw, "%s/%s\t%s/%s\t%s\t%s\n", from.cluster, probePod, to.cluster, probePod, to.addr, rtt.Round(time.Microsecond))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return waitNetworkReady(ctx, root)
}

// waitNetworkReady waits until the root shows the gateway of each of
// NetworkClusters and each subnet of the sample VPC Ready.
func waitNetworkReady(ctx context.Context, root *localcluster.Cluster) error {
	c, err := edgeClient(root)
	if err != nil {
		return err
	}
	var pending []string
	ready := func(ctx context.Context, o client.Object, conds *[]metav1.Condition) bool {
		return c.Get(ctx, client.ObjectKeyFromObject(o), o) == nil && meta.IsStatusConditionTrue(*conds, networkv1alpha1.ConditionReady)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pending = pending[:0]
		for _, name := range NetworkClusters {
			gw := &networkv1alpha1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: name}}
			if !ready(ctx, gw, &gw.Status.Conditions) {
				pending = append(pending, "gateway "+name)
			}
			sn := &networkv1alpha1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "telemetry-" + name}}
			if !ready(ctx, sn, &sn.Status.Conditions) {
				pending = append(pending, "subnet "+sn.Name)
			}
		}
		return len(pending) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the root to show the network Ready (not yet: %s): %w", strings.Join(pending, ", "), err)
	}
	return nil
}

// addProbe creates the probe pod in the cluster, its network namespace, and
// runs CNI ADD for it until its subnet has reached the cluster.
func (n *network) addProbe(ctx context.Context, c *localcluster.Cluster, dir, cni string) (*probe, error) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: probePod,
		Annotations: map[string]string{networkv1alpha1.AnnotationSubnet: "telemetry-" + c.Name}}}
	pod.Spec.Containers = []corev1.Container{{Name: "probe", Image: "registry.k8s.io/pause:3.10"}}
	// The controller manager creates the default ServiceAccount a moment
	// after the namespace: retry until admission lets the pod in.
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.Client().CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{FieldManager: "fornax-demo"})
		return err == nil || apierrors.IsAlreadyExists(err), nil
	})
	if err != nil {
		return nil, fmt.Errorf("creating pod default/%s: %w", probePod, err)
	}
	name := n.podNS(c.Name)
	h, err := netlab.NewNamedNS(name)
	if err != nil {
		return nil, err
	}
	_ = h.Close()
	p := &probe{cluster: c.Name, nsPath: filepath.Join("/var/run/netns", name)}
	conf, err := libcni.NetworkConfFromBytes(fmt.Appendf(nil,
		`{"cniVersion": "1.1.0", "name": "fornax", "plugins": [{"type": "fornax-cni", "kubeconfig": %q, "dataDir": %q, "routerPrefix": %q}]}`,
		c.Kubeconfig, filepath.Join(dir, "cni", "ipam"), n.gatewayPrefix(c.Name)))
	if err != nil {
		return nil, err
	}
	rt := libcni.NewCNIConfigWithCacheDir([]string{filepath.Dir(cni)}, filepath.Join(dir, "cni", "cache"), nil)
	podRT := &libcni.RuntimeConf{ContainerID: "demo-" + c.Name + "-" + probePod, NetNS: p.nsPath, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", probePod}}}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		last = netlab.RunIn(n.sites[c.Name].NetNSPath(), func() error {
			r, err := rt.AddNetworkList(ctx, conf, podRT)
			if err != nil {
				return err
			}
			res, err := types100.GetResult(r)
			if err != nil {
				return err
			}
			if len(res.IPs) != 1 {
				return fmt.Errorf("CNI ADD gave the addresses %v, want one", res.IPs)
			}
			a, ok := netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
			if !ok {
				return fmt.Errorf("CNI ADD gave the address %v, want IPv4", res.IPs[0].Address)
			}
			p.addr = a
			return nil
		})
		return last == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("CNI ADD (its subnet may not have reached %s): %w: %w", c.Name, last, err)
	}
	return p, nil
}

// waitPing pings to from inside the pod until a reply comes, for a minute at
// most (the gateways learn of each other's subnets within a second or two).
func waitPing(ctx context.Context, from *probe, to netip.Addr) (time.Duration, error) {
	var rtt time.Duration
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		rtt, last = ping(from.nsPath, to, 500*time.Millisecond)
		return last == nil, nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w: %w", last, err)
	}
	return rtt, nil
}

// ping sends one ICMP echo request from inside the namespace at nsPath and
// waits for its reply.
func ping(nsPath string, to netip.Addr, timeout time.Duration) (time.Duration, error) {
	var rtt time.Duration
	err := netlab.RunIn(nsPath, func() error {
		conn, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return fmt.Errorf("opening an ICMP socket: %w", err)
		}
		defer func() { _ = conn.Close() }()
		id, seq := os.Getpid()&0xffff, int(time.Now().UnixNano()&0xffff)
		req, err := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("fornax demo")}}).Marshal(nil)
		if err != nil {
			return err
		}
		sent := time.Now()
		if err := conn.SetDeadline(sent.Add(timeout)); err != nil {
			return err
		}
		if _, err := conn.WriteTo(req, &net.IPAddr{IP: to.AsSlice()}); err != nil {
			return fmt.Errorf("sending an echo request: %w", err)
		}
		buf := make([]byte, 1500)
		for {
			k, peer, err := conn.ReadFrom(buf)
			if err != nil {
				return fmt.Errorf("no echo reply: %w", err)
			}
			m, err := icmp.ParseMessage(1, buf[:k])
			if err != nil || m.Type != ipv4.ICMPTypeEchoReply || peer.String() != to.String() {
				continue // the raw socket sees every ICMP message of the namespace
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq {
				rtt = time.Since(sent)
				return nil
			}
		}
	})
	return rtt, err
}

// removeNetwork deletes what the demo in dir built in the kernel, once its
// processes are stopped, and says how many namespaces went.
func removeNetwork(dir string) (int, error) {
	prefix := NetPrefix(dir)
	if netlab.Check() != nil {
		if left := netlab.Leftovers(prefix); len(left) > 0 {
			return 0, fmt.Errorf("the demo's network is left (%s): run 'fornaxctl demo down' as root to remove it", strings.Join(left, ", "))
		}
		return 0, nil
	}
	n, err := netlab.Remove(prefix)
	if err != nil {
		return n, fmt.Errorf("removing the demo's network: %w", err)
	}
	if left := netlab.Leftovers(prefix); len(left) > 0 {
		return n, errors.New("the demo's network is still there after removing it: " + strings.Join(left, ", "))
	}
	return n, nil
}
