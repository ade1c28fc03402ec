// Package demo starts and stops the local demo tree: a root cluster and a
// cascade of edge clusters made of real, pinned Kubernetes binaries (see
// localcluster), joined with Fornax the way docs/link.md tells an operator to
// (init and fornaxd --listen at each parent, a token per child, the join,
// fornaxd in each child), then sample missions delivered and the tree
// printed.
package demo

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/examples"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

// Site is one cluster of the demo tree.
type Site struct {
	Name   string
	Flavor localcluster.Flavor
	Nodes  int
	// Parent is the cluster it joins ("" for the root); a parent comes
	// before its children in Topology.
	Parent string
	// Labels it joins with.
	Labels map[string]string
}

// Topology is the demo tree, parents before children:
//
//	root
//	├── eu (a middle cluster)
//	│   ├── dublin
//	│   └── factory-7 (K3s-style)
//	└── us
var Topology = []Site{
	{Name: "root", Flavor: localcluster.FlavorK8s, Nodes: 1},
	{Name: "eu", Flavor: localcluster.FlavorK8s, Nodes: 1, Parent: "root", Labels: map[string]string{"topology.fornax.io/region": "eu"}},
	{Name: "us", Flavor: localcluster.FlavorK8s, Nodes: 1, Parent: "root", Labels: map[string]string{"topology.fornax.io/region": "us"}},
	{Name: "dublin", Flavor: localcluster.FlavorK8s, Nodes: 2, Parent: "eu", Labels: map[string]string{"topology.fornax.io/site": "dublin"}},
	{Name: "factory-7", Flavor: localcluster.FlavorK3s, Nodes: 2, Parent: "eu",
		Labels: map[string]string{"topology.fornax.io/site": "factory-7", "topology.fornax.io/org": "manufacturing"}},
}

// Options configure Up and Down.
type Options struct {
	// Dir holds one directory per cluster.
	Dir string
	// BinDir holds the pinned binaries; empty means localcluster.FindBinDir.
	BinDir string
	// Out receives progress and the final table.
	Out io.Writer
	// Network is NetworkAuto (default), NetworkOn or NetworkOff: whether the
	// clusters run in network namespaces of their own on a bridge, with
	// gateways, a sample VPC and pods pinging across it (root only).
	Network string
}

// Up replaces any previous demo in Dir with a fresh tree, installs Fornax's
// CRDs in the root and prints the clusters. The processes keep running after
// Up returns; Down stops them.
func Up(ctx context.Context, o Options) error {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); err == nil {
		fmt.Fprintf(o.Out, "Removing the previous demo in %s\n", dir)
		if err := Down(ctx, o); err != nil {
			return err
		}
	}
	withNet, err := networkWanted(o)
	if err != nil {
		return err
	}
	if err := up(ctx, o, dir, withNet); err != nil {
		// Left as it failed, for a look: the logs are in the directory.
		return fmt.Errorf("%w\n(what the demo started is left for a look, logs under %s/<cluster>/logs; 'make demo-down' removes everything)", err, dir)
	}
	return nil
}

// up is Up once the previous demo is gone.
func up(ctx context.Context, o Options, dir string, withNet bool) error {
	began := time.Now()
	var nw *network
	if withNet {
		prefix := NetPrefix(dir)
		fmt.Fprintf(o.Out, "Building the demo's network: a bridge %s-wan and a network namespace per cluster (%s-<cluster>)\n", prefix, prefix)
		var err error
		if nw, err = buildNetwork(prefix); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Out, "Starting %d clusters in parallel in %s\n", len(Topology), dir)
	log := slog.New(progressHandler{out: o.Out})
	opts := make([]localcluster.Options, len(Topology))
	for i, s := range Topology {
		opts[i] = localcluster.Options{
			Name:       s.Name,
			Flavor:     s.Flavor,
			Dir:        filepath.Join(dir, s.Name),
			BinDir:     o.BinDir,
			NodeGroups: []localcluster.NodeGroup{{Name: "node", Count: s.Nodes}},
			Detached:   true,
			Logger:     log,
		}
		if nw != nil {
			site := nw.sites[s.Name]
			opts[i].Host, opts[i].NetNS = site.IP.String(), site.NetNSPath()
		}
	}
	clusters, err := localcluster.StartAll(ctx, opts...)
	if err != nil {
		return fmt.Errorf("starting the demo clusters: %w", err)
	}
	metricsAddrs := map[string]string{} // each cluster's fornaxd's /metrics
	if err := joinTree(ctx, o, clusters, nw, metricsAddrs); err != nil {
		return err
	}
	root := clusters[0]
	fmt.Fprintf(o.Out, "Applying the sample missions at the root\n")
	if err := applyExample(ctx, o, dir, root, examples.Missions, "missions"); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "Waiting for them to be Ready in every cluster they select\n")
	if err := waitMissionsReady(ctx, root); err != nil {
		return err
	}
	byName := map[string]*localcluster.Cluster{}
	for _, c := range clusters {
		byName[c.Name] = c
	}
	if nw != nil {
		if err := nw.connect(ctx, o, dir, byName); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Out, "Demo ready in %s\n\n", time.Since(began).Round(100*time.Millisecond))
	if err := PrintClusters(ctx, o.Out, clusters); err != nil {
		return err
	}
	binDir, _ := binDir(o)
	kubectl := filepath.Join(binDir, localcluster.BinKubectl)
	fornaxctl, err := os.Executable()
	if err != nil {
		return err
	}
	type step struct {
		where, title string
		cmd          []string
	}
	steps := []step{
		{"the root", "fornaxctl get clusters --tree", []string{fornaxctl, "get", "clusters", "--tree", "--kubeconfig", root.Kubeconfig}},
		{"the root", "kubectl get edgeclusters", []string{kubectl, "--kubeconfig", root.Kubeconfig, "get", "edgeclusters"}},
		{"the root", "kubectl get missions -A", []string{kubectl, "--kubeconfig", root.Kubeconfig, "get", "missions", "-A"}},
		{"the root", "fornaxctl mission status shop -n shop", []string{fornaxctl, "mission", "status", "shop", "-n", "shop", "--kubeconfig", root.Kubeconfig}},
	}
	if nw != nil {
		steps = append(steps,
			step{"the root", "kubectl get vpcs,subnets", []string{kubectl, "--kubeconfig", root.Kubeconfig, "get", "vpcs,subnets"}},
			step{"the root", "kubectl get gateways", []string{kubectl, "--kubeconfig", root.Kubeconfig, "get", "gateways"}})
	}
	for _, s := range steps {
		out, err := exec.CommandContext(ctx, s.cmd[0], s.cmd[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s at %s: %w: %s", s.title, s.where, err, out)
		}
		fmt.Fprintf(o.Out, "\nAt %s, %s:\n%s", s.where, s.title, out)
	}
	fmt.Fprintf(o.Out, `
The root's kubeconfig: %s
Explore:
  export KUBECONFIG=%s
  %s get edgeclusters -o wide
  %s get missions -A
  %s get clusters --tree
  %s --kubeconfig %s -n shop get pods    # in factory-7, two levels below the root
  %s describe cluster factory-7
  curl -s http://%s/metrics | grep ^fornax_hub    # the root's hub (each fornaxd serves /metrics, /healthz, /readyz)
`, root.Kubeconfig, root.Kubeconfig, kubectl, kubectl, fornaxctl, kubectl, byName["factory-7"].Kubeconfig, fornaxctl, metricsAddrs["root"])
	if nw != nil {
		fmt.Fprintf(o.Out, `  %s get vpcs,subnets
  ip netns exec %s ping -c 3 %s    # dublin's probe pod to factory-7's, through the gateways
`, kubectl, nw.podNS("dublin"), nw.addrs["factory-7"])
	}
	fmt.Fprintf(o.Out, "Stop everything with: make demo-down\n")
	return nil
}

// applyExample copies the sample manifests of examples/<sub> into the demo's
// directory, where they can be edited and applied again, and applies them at
// the root as a user would: kubectl apply --server-side -f, printed as run.
func applyExample(ctx context.Context, o Options, dir string, root *localcluster.Cluster, fsys fs.FS, sub string) error {
	to := filepath.Join(dir, "examples", sub)
	if err := os.MkdirAll(to, 0o755); err != nil {
		return err
	}
	files, err := fs.Glob(fsys, sub+"/*.yaml")
	if err != nil {
		return err
	}
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, filepath.Base(f)), b, 0o644); err != nil {
			return err
		}
	}
	bins, err := binDir(o)
	if err != nil {
		return err
	}
	args := []string{"--kubeconfig", root.Kubeconfig, "apply", "--server-side", "-f", to + string(filepath.Separator)}
	fmt.Fprintf(o.Out, "  %-12s$ kubectl %s\n", "root", showCommand(dir, args))
	out, err := exec.CommandContext(ctx, filepath.Join(bins, localcluster.BinKubectl), args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl apply -f examples/%s at the root: %w: %s", sub, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// waitMissionsReady waits until every mission at the root is Ready.
func waitMissionsReady(ctx context.Context, root *localcluster.Cluster) error {
	c, err := edgeClient(root)
	if err != nil {
		return err
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		list := &edgev1alpha1.MissionList{}
		if err := c.List(ctx, list); err != nil || len(list.Items) == 0 {
			return false, nil
		}
		for _, m := range list.Items {
			cond := meta.FindStatusCondition(m.Status.Conditions, edgev1alpha1.MissionReady)
			if cond == nil || cond.Status != metav1.ConditionTrue {
				if cond != nil {
					last = fmt.Sprintf("mission %s/%s: %s", m.Namespace, m.Name, cond.Message)
				}
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the sample missions to be Ready (%s): %w", last, err)
	}
	return nil
}

func binDir(o Options) (string, error) {
	if o.BinDir != "" {
		return o.BinDir, nil
	}
	return localcluster.FindBinDir()
}

// joinTree joins the clusters into the tree of Topology with the commands
// docs/link.md gives an operator, run for real and printed as they run:
// 'fornaxctl init' and fornaxd --listen at each parent, 'fornaxctl token
// create' there for each child, 'fornaxctl join' and fornaxd in the child. A
// parent serves before its children join it.
func joinTree(ctx context.Context, o Options, clusters []*localcluster.Cluster, nw *network, metricsAddrs map[string]string) error {
	dir, err := binDir(o)
	if err != nil {
		return err
	}
	fornaxd, err := findBinary("fornaxd", dir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	demoDir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	byName := map[string]*localcluster.Cluster{}
	for _, c := range clusters {
		byName[c.Name] = c
	}
	isParent := map[string]bool{}
	for _, s := range Topology {
		isParent[s.Parent] = true
	}
	root := clusters[0]
	rootCli, err := edgeClient(root)
	if err != nil {
		return err
	}
	// fornaxctl runs this very program with args, as a user would, after
	// printing the command (paths relative to the demo's directory, the
	// token's secret and the CA hash shortened).
	fornaxctl := func(at string, args ...string) (string, error) {
		fmt.Fprintf(o.Out, "  %-12s$ fornaxctl %s\n", at, showCommand(demoDir, args))
		cmd := exec.CommandContext(ctx, self, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("fornaxctl %s at %s: %w: %s", args[0], at, err, strings.TrimSpace(stderr.String()))
		}
		return string(out), nil
	}
	// Status within a second, for the demo (the default is 10 s).
	common := []string{"--report-interval", "1s"}
	// serves picks where a parent's hub (port) or the root's admission
	// webhook listens: in the cluster's own namespace with the network, a
	// free port of this host otherwise.
	serves := func(cluster, port string) (string, error) {
		if nw != nil {
			return net.JoinHostPort(nw.sites[cluster].IP.String(), port), nil
		}
		return freeAddr()
	}
	endpoints := map[string]string{}
	for _, s := range Topology {
		c := byName[s.Name]
		metrics, err := serves(s.Name, "9090")
		if err != nil {
			return err
		}
		health, err := serves(s.Name, "9091")
		if err != nil {
			return err
		}
		metricsAddrs[s.Name] = metrics
		args := append([]string{"--kubeconfig", c.Kubeconfig, "--metrics-bind-address", metrics, "--health-bind-address", health}, common...)
		args = append(args, nw.gatewayArgs(s.Name)...)
		if s.Parent != "" {
			parent := byName[s.Parent]
			out, err := fornaxctl(s.Parent, "token", "create", "--kubeconfig", parent.Kubeconfig, "--ttl", "1h", "--description", "demo: "+s.Name)
			if err != nil {
				return err
			}
			m := joinLine.FindStringSubmatch(out)
			if m == nil {
				return fmt.Errorf("fornaxctl token create at %s printed no join command: %q", s.Parent, out)
			}
			joinArgs := []string{"join", "--kubeconfig", c.Kubeconfig, "--parent", m[1], "--token", m[2], "--ca-hash", m[3], "--name", s.Name}
			if len(s.Labels) > 0 {
				var kv []string
				for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
					kv = append(kv, k+"="+s.Labels[k])
				}
				joinArgs = append(joinArgs, "--labels", strings.Join(kv, ","))
			}
			if _, err := fornaxctl(s.Name, joinArgs...); err != nil {
				return err
			}
		}
		if isParent[s.Name] {
			endpoint, err := serves(s.Name, "7443")
			if err != nil {
				return err
			}
			initArgs := []string{"init", "--kubeconfig", c.Kubeconfig, "--endpoint", endpoint}
			if s.Parent == "" {
				initArgs = append(initArgs, "--cluster-name", s.Name)
			}
			if _, err := fornaxctl(s.Name, initArgs...); err != nil {
				return err
			}
			endpoints[s.Name] = endpoint
			args = append(args, "--listen", endpoint)
			if s.Parent == "" {
				// The root's hub also serves the admission webhook of the
				// network kinds (VPCs and subnets that overlap are refused).
				webhook, err := serves(s.Name, "9443")
				if err != nil {
					return err
				}
				args = append(args, "--cluster-name", s.Name, "--webhook-listen", webhook, "--webhook-url", "https://"+webhook)
			}
		}
		fmt.Fprintf(o.Out, "  %-12s$ fornaxd %s &\n", s.Name, showCommand(demoDir, args))
		if _, err := c.Run("fornaxd", fornaxd, args...); err != nil {
			return err
		}
		if isParent[s.Name] {
			if err := waitListening(ctx, endpoints[s.Name]); err != nil {
				return fmt.Errorf("the fornaxd of %s did not start (log: %s/logs/fornaxd.log): %w", s.Name, c.Dir, err)
			}
		}
		if s.Parent != "" && isParent[s.Name] {
			// Its children's joins ask up the tree whether their names are
			// free: its uplink must be up first.
			if err := waitCondition(ctx, rootCli, []string{s.Name}, edgev1alpha1.EdgeClusterConnected); err != nil {
				return fmt.Errorf("%s did not connect to %s (log: %s/logs/fornaxd.log): %w", s.Name, s.Parent, c.Dir, err)
			}
		}
	}
	fmt.Fprintf(o.Out, "Waiting for every edge cluster to be Ready at the root\n")
	var names []string
	for _, s := range Topology[1:] {
		names = append(names, s.Name)
	}
	return waitCondition(ctx, rootCli, names, edgev1alpha1.EdgeClusterReady)
}

// joinLine is the join command 'fornaxctl token create' prints.
var joinLine = regexp.MustCompile(`fornaxctl join --parent (\S+) --token (\S+) --ca-hash (\S+) --name <CLUSTER-NAME>`)

// showCommand prints a command's arguments for the demo's progress: paths
// under the demo's directory relative to it, a token's secret and the CA
// hash shortened (the demo's output is not where secrets go).
func showCommand(demoDir string, args []string) string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		switch {
		case i > 0 && args[i-1] == "--token":
			if id, _, ok := strings.Cut(a, "."); ok {
				a = id + ".…"
			}
		case i > 0 && args[i-1] == "--ca-hash" && len(a) > len("sha256:")+8:
			a = a[:len("sha256:")+8] + "…"
		}
		a = strings.TrimPrefix(a, demoDir+string(filepath.Separator))
		if strings.ContainsAny(a, " \t") {
			a = "'" + a + "'"
		}
		out = append(out, a)
	}
	return strings.Join(out, " ")
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func edgeClient(c *localcluster.Cluster) (client.Client, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{edgev1alpha1.AddToScheme, networkv1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return client.New(c.RESTConfig(), client.Options{Scheme: scheme})
}

// findBinary finds one of Fornax's programs (fornaxd, fornax-cni) next to
// the running program (fornaxctl), else in the tools directory.
func findBinary(name, binDir string) (string, error) {
	var tried []string
	if exe, err := os.Executable(); err == nil {
		tried = append(tried, filepath.Join(filepath.Dir(exe), name))
	}
	tried = append(tried, filepath.Join(binDir, name))
	for _, p := range tried {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (looked at %s): run 'make build' (make demo does)", name, strings.Join(tried, ", "))
}

func waitListening(ctx context.Context, addr string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false, nil
		}
		return true, c.Close()
	})
}

// waitCondition waits until the root shows each named cluster with the
// condition True.
func waitCondition(ctx context.Context, c client.Client, names []string, cond string) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, n := range names {
			ec := &edgev1alpha1.EdgeCluster{}
			if err := c.Get(ctx, client.ObjectKey{Name: n}, ec); err != nil {
				return false, nil
			}
			if c := meta.FindStatusCondition(ec.Status.Conditions, cond); c == nil || c.Status != metav1.ConditionTrue {
				return false, nil
			}
		}
		return true, nil
	})
}

// Down stops every process of the demo in Dir and removes the directory.
func Down(ctx context.Context, o Options) error {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	procs, err := localcluster.FindProcesses(dir, 0)
	if err != nil {
		return err
	}
	if err := localcluster.KillProcesses(ctx, dir); err != nil {
		return fmt.Errorf("stopping the demo: %w", err)
	}
	namespaces, err := removeNetwork(dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	fmt.Fprintf(o.Out, "Demo stopped (%d processes), %d network namespaces and %s removed\n", len(procs), namespaces, dir)
	return nil
}

// PrintClusters prints name, flavor, version, nodes Ready and kubeconfig of
// each cluster, asking each API server.
func PrintClusters(ctx context.Context, out io.Writer, clusters []*localcluster.Cluster) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tFLAVOR\tVERSION\tNODES READY\tKUBECONFIG")
	for _, c := range clusters {
		v, err := c.Client().Discovery().ServerVersion()
		if err != nil {
			return fmt.Errorf("asking %s for its version: %w", c.Name, err)
		}
		nodes, err := c.Client().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("listing nodes of %s: %w", c.Name, err)
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\n", c.Name, c.Flavor, v.GitVersion, ready, len(nodes.Items), c.Kubeconfig)
	}
	return tw.Flush()
}

// progressHandler prints log records as short progress lines.
type progressHandler struct {
	out   io.Writer
	attrs []slog.Attr
}

func (h progressHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h progressHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	var kv []string
	add := func(a slog.Attr) bool {
		if a.Key == "cluster" {
			fmt.Fprintf(&b, "  %-12s", a.Value.String())
		} else {
			kv = append(kv, a.Key+"="+a.Value.String())
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	sort.Strings(kv)
	fmt.Fprintf(&b, "%s %s\n", r.Message, strings.Join(kv, " "))
	_, err := io.WriteString(h.out, b.String())
	return err
}

func (h progressHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return progressHandler{out: h.out, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h progressHandler) WithGroup(string) slog.Handler { return h }
