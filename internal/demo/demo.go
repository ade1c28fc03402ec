// Package demo starts and stops the local demo tree: a root cluster and edge
// clusters made of real, pinned Kubernetes binaries (see localcluster), joined
// with Fornax the way docs/link.md tells an operator to: the root's hub
// (fornaxd --listen), a token per edge, the join, and fornaxd in each edge.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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
	"github.com/fornax-edge/fornax/internal/bootstrap"
	"github.com/fornax-edge/fornax/internal/certs"
	"github.com/fornax-edge/fornax/internal/install"
	"github.com/fornax-edge/fornax/internal/join"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

// Site is one cluster of the demo tree.
type Site struct {
	Name   string
	Flavor localcluster.Flavor
	Nodes  int
}

// Topology is the demo tree: the root first, then the edge clusters.
var Topology = []Site{
	{Name: "root", Flavor: localcluster.FlavorK8s, Nodes: 1},
	{Name: "eu-west", Flavor: localcluster.FlavorK8s, Nodes: 2},
	{Name: "eu-central", Flavor: localcluster.FlavorK8s, Nodes: 2},
	{Name: "factory-7", Flavor: localcluster.FlavorK3s, Nodes: 2},
}

// Options configure Up and Down.
type Options struct {
	// Dir holds one directory per cluster.
	Dir string
	// BinDir holds the pinned binaries; empty means localcluster.FindBinDir.
	BinDir string
	// Out receives progress and the final table.
	Out io.Writer
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
	began := time.Now()
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
	}
	clusters, err := localcluster.StartAll(ctx, opts...)
	if err != nil {
		_ = Down(context.WithoutCancel(ctx), o)
		return fmt.Errorf("starting the demo clusters (logs under %s/<cluster>/logs): %w", dir, err)
	}
	if err := joinTree(ctx, o, clusters); err != nil {
		return err
	}
	root := clusters[0]
	fmt.Fprintf(o.Out, "Demo ready in %s\n\n", time.Since(began).Round(100*time.Millisecond))
	if err := PrintClusters(ctx, o.Out, clusters); err != nil {
		return err
	}
	binDir, _ := binDir(o)
	kubectl := filepath.Join(binDir, localcluster.BinKubectl)
	tree, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", root.Kubeconfig, "get", "edgeclusters").CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl get edgeclusters at the root: %w: %s", err, tree)
	}
	fmt.Fprintf(o.Out, "\nAt the root, kubectl get edgeclusters:\n%s", tree)
	fmt.Fprintf(o.Out, `
Explore with the pinned kubectl and fornaxctl:
  export KUBECONFIG=%s
  %s get edgeclusters -o wide
  %s get clusters
  %s --kubeconfig %s get nodes
Stop everything with: make demo-down
`, root.Kubeconfig, kubectl, filepath.Join(binDir, "fornaxctl"), kubectl, clusters[len(clusters)-1].Kubeconfig)
	return nil
}

func binDir(o Options) (string, error) {
	if o.BinDir != "" {
		return o.BinDir, nil
	}
	return localcluster.FindBinDir()
}

// joinTree makes the first cluster the parent of the others, with the same
// steps as 'fornaxctl init', 'token create', 'join' and fornaxd.
func joinTree(ctx context.Context, o Options, clusters []*localcluster.Cluster) error {
	dir, err := binDir(o)
	if err != nil {
		return err
	}
	fornaxd, err := fornaxdPath(dir)
	if err != nil {
		return err
	}
	root, edges := clusters[0], clusters[1:]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	endpoint := l.Addr().String()
	l.Close()

	fmt.Fprintf(o.Out, "Initialising %s as the root (fornaxctl init) and starting its hub on %s\n", root.Name, endpoint)
	if err := install.API(ctx, root.RESTConfig()); err != nil {
		return fmt.Errorf("installing Fornax's API into %s: %w", root.Name, err)
	}
	ca, _, err := install.Hub(ctx, root.Client(), install.Namespace, root.Name, endpoint)
	if err != nil {
		return err
	}
	quiet := []string{"--metrics-bind-address", "0", "--health-bind-address", "0"}
	if _, err := root.Run("fornaxd", fornaxd, append([]string{"--kubeconfig", root.Kubeconfig,
		"--cluster-name", root.Name, "--listen", endpoint}, quiet...)...); err != nil {
		return err
	}
	if err := waitListening(ctx, endpoint); err != nil {
		return fmt.Errorf("the root's fornaxd did not start (log: %s/logs/fornaxd.log): %w", root.Dir, err)
	}
	for _, e := range edges {
		token, _, err := bootstrap.Create(ctx, root.Client(), install.Namespace, time.Hour, 1, "demo: "+e.Name)
		if err != nil {
			return err
		}
		uid, err := join.ClusterUID(ctx, e.Client())
		if err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "  %-12sjoining (fornaxctl join --name %s) and starting fornaxd\n", e.Name, e.Name)
		creds, err := join.Join(ctx, join.Request{Parent: endpoint, Token: token, CAHash: certs.Hash(ca.Cert), Name: e.Name,
			Labels: siteLabels[e.Name]}, uid)
		if err != nil {
			return err
		}
		if err := join.Save(ctx, e.Client(), install.Namespace, creds); err != nil {
			return err
		}
		if err := install.API(ctx, e.RESTConfig()); err != nil {
			return err
		}
		if _, err := e.Run("fornaxd", fornaxd, append([]string{"--kubeconfig", e.Kubeconfig, "--report-interval", "2s"}, quiet...)...); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Out, "Waiting for every edge cluster to be Ready at the root\n")
	return waitReady(ctx, root, len(edges))
}

// fornaxdPath finds fornaxd next to the running program (fornaxctl), else in
// the tools directory.
func fornaxdPath(binDir string) (string, error) {
	var tried []string
	if exe, err := os.Executable(); err == nil {
		tried = append(tried, filepath.Join(filepath.Dir(exe), "fornaxd"))
	}
	tried = append(tried, filepath.Join(binDir, "fornaxd"))
	for _, p := range tried {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("fornaxd not found (looked at %s): run 'make build' (make demo does)", strings.Join(tried, ", "))
}

// siteLabels are the topology labels the demo's edge clusters join with.
var siteLabels = map[string]map[string]string{
	"eu-west":    {"topology.fornax.io/region": "eu", "topology.fornax.io/site": "dublin"},
	"eu-central": {"topology.fornax.io/region": "eu", "topology.fornax.io/site": "frankfurt"},
	"factory-7":  {"topology.fornax.io/region": "eu", "topology.fornax.io/org": "manufacturing"},
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

func waitReady(ctx context.Context, root *localcluster.Cluster, n int) error {
	scheme := runtime.NewScheme()
	if err := edgev1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.New(root.RESTConfig(), client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list := &edgev1alpha1.EdgeClusterList{}
		if err := c.List(ctx, list); err != nil {
			return false, nil
		}
		ready := 0
		for _, ec := range list.Items {
			if cond := meta.FindStatusCondition(ec.Status.Conditions, edgev1alpha1.EdgeClusterReady); cond != nil && cond.Status == metav1.ConditionTrue {
				ready++
			}
		}
		return ready == n, nil
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
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	fmt.Fprintf(o.Out, "Demo stopped (%d processes) and %s removed\n", len(procs), dir)
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
