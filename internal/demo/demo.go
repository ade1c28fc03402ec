// Package demo starts and stops the local demo tree: a root cluster and edge
// clusters made of real, pinned Kubernetes binaries (see localcluster), with
// Fornax's CRDs installed in the root.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fornax-edge/fornax/internal/install"
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
	root := clusters[0]
	fmt.Fprintf(o.Out, "Installing Fornax CRDs into %s\n", root.Name)
	if err := install.API(ctx, root.RESTConfig()); err != nil {
		return fmt.Errorf("installing CRDs into the root cluster: %w", err)
	}
	fmt.Fprintf(o.Out, "Demo ready in %s\n\n", time.Since(began).Round(100*time.Millisecond))
	if err := PrintClusters(ctx, o.Out, clusters); err != nil {
		return err
	}
	kubectl := "bin/kubectl"
	if o.BinDir != "" {
		kubectl = filepath.Join(o.BinDir, "kubectl")
	}
	fmt.Fprintf(o.Out, `
Use the pinned kubectl on any cluster, for example:
  export KUBECONFIG=%s
  %s get nodes
  %s get crd edgeclusters.edge.fornax.io missions.edge.fornax.io
  %s --kubeconfig %s get pods -A
Stop everything with: make demo-down
`, root.Kubeconfig, kubectl, kubectl, kubectl, clusters[len(clusters)-1].Kubeconfig)
	return nil
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
