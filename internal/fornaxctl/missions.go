package fornaxctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
)

func newMissionCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "mission", Short: "Create missions and see where they stand",
		Example: "  fornaxctl mission create web -n shop -f web/ --selector topology.fornax.io/region=eu\n  fornaxctl mission status web -n shop"}
	var f clusterFlags
	var files, clusters, subtrees, exclude []string
	var selector, namespace string
	create := &cobra.Command{
		Use:   "create NAME -f FILE_OR_DIR",
		Short: "Wrap plain manifests into a Mission and create it",
		Long: `mission create reads Kubernetes manifests (YAML or JSON, several documents per
file; every *.yaml, *.yml and *.json file of a directory) and creates a Mission that
places them on the selected clusters. Without --clusters, --selector or --subtree
the mission goes to every cluster.`,
		Example: `  fornaxctl mission create web -n shop -f ./web/ --selector topology.fornax.io/region=eu
  fornaxctl mission create migrate -n shop -f job.yaml --clusters berlin-3,paris-1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(files) == 0 {
				return errors.New("give the manifests with -f FILE_OR_DIR")
			}
			var resources []runtime.RawExtension
			for _, p := range files {
				rs, err := readManifests(p)
				if err != nil {
					return err
				}
				resources = append(resources, rs...)
			}
			if len(resources) == 0 {
				return fmt.Errorf("no manifests found in %s", strings.Join(files, ", "))
			}
			m := &edgev1alpha1.Mission{
				ObjectMeta: metav1.ObjectMeta{Name: args[0], Namespace: namespace},
				Spec: edgev1alpha1.MissionSpec{Resources: resources, Placement: edgev1alpha1.Placement{
					Clusters: clusters, Subtrees: subtrees, Exclude: exclude}},
			}
			if selector != "" {
				sel, err := metav1.ParseToLabelSelector(selector)
				if err != nil {
					return fmt.Errorf("--selector: %w", err)
				}
				m.Spec.Placement.ClusterSelector = sel
			}
			_, _, c, err := f.clients()
			if err != nil {
				return err
			}
			if err := c.Create(cmd.Context(), m); err != nil {
				return fmt.Errorf("creating mission %s/%s: %w", namespace, args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mission %s/%s created with %d resources; follow it with: fornaxctl mission status %s -n %s\n",
				namespace, args[0], len(resources), args[0], namespace)
			return nil
		},
	}
	f.add(create)
	missionNamespaceFlag(create, &namespace, "namespace of the mission (its namespaced resources land in it at the edge)")
	create.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifest file or directory (repeatable)")
	create.Flags().StringSliceVar(&clusters, "clusters", nil, "cluster names to place on")
	create.Flags().StringVar(&selector, "selector", "", "label selector over EdgeCluster labels, e.g. topology.fornax.io/region=eu")
	create.Flags().StringSliceVar(&subtrees, "subtree", nil, "clusters whose whole subtree to place on")
	create.Flags().StringSliceVar(&exclude, "exclude", nil, "clusters never to place on")

	var sf clusterFlags
	var statusNS, statusOut string
	var wait time.Duration
	st := &cobra.Command{
		Use:   "status NAME",
		Short: "Show where a mission stands in each cluster",
		Long: `status shows a mission's summary and one line per targeted cluster (failures
first). With --wait it first waits until the mission is Ready in every
targeted cluster for its current generation, printing a line each time the
counts change, and fails if that does not happen in time.`,
		Example: "  fornaxctl mission status web -n shop\n  fornaxctl mission status web -n shop --wait 5m",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, _, c, err := sf.clients()
			if err != nil {
				return err
			}
			key := client.ObjectKey{Namespace: statusNS, Name: args[0]}
			m := &edgev1alpha1.Mission{}
			if err := c.Get(cmd.Context(), key, m); err != nil {
				return fmt.Errorf("reading mission %s/%s: %w", statusNS, args[0], err)
			}
			if wait > 0 {
				if m, err = waitMissionReady(cmd.Context(), c, key, wait, cmd.ErrOrStderr()); err != nil {
					if m != nil {
						_ = printMissionStatus(cmd.OutOrStdout(), m, time.Now())
					}
					return err
				}
			}
			m.SetGroupVersionKind(edgev1alpha1.GroupVersion.WithKind("Mission"))
			if done, err := printStructured(cmd.OutOrStdout(), statusOut, m); done {
				return err
			}
			return printMissionStatus(cmd.OutOrStdout(), m, time.Now())
		},
	}
	sf.add(st)
	st.Flags().StringVarP(&statusOut, "output", "o", "table", "table, yaml or json")
	missionNamespaceFlag(st, &statusNS, "namespace of the mission")
	st.Flags().DurationVar(&wait, "wait", 0, "wait up to this long (e.g. 5m) until the mission is Ready everywhere it is placed, showing progress on stderr")
	cmd.AddCommand(create, st)
	return cmd
}

// readManifests reads every manifest of a file, or of the manifest files of a directory.
func readManifests(path string) ([]runtime.RawExtension, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	paths := []string{path}
	if info.IsDir() {
		paths = nil
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			switch filepath.Ext(e.Name()) {
			case ".yaml", ".yml", ".json":
				paths = append(paths, filepath.Join(path, e.Name()))
			}
		}
		sort.Strings(paths)
	}
	var out []runtime.RawExtension
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for i := 1; ; i++ {
			var ext runtime.RawExtension
			if err := dec.Decode(&ext); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s, document %d: %w", p, i, err)
			}
			if len(bytes.TrimSpace(ext.Raw)) == 0 || string(ext.Raw) == "null" {
				continue
			}
			out = append(out, ext)
		}
	}
	return out, nil
}

func printMissionStatus(out io.Writer, m *edgev1alpha1.Mission, now time.Time) error {
	s := m.Status.Summary
	ready := "-"
	if c := meta.FindStatusCondition(m.Status.Conditions, edgev1alpha1.MissionReady); c != nil {
		ready = fmt.Sprintf("%s (%s: %s)", c.Status, c.Reason, c.Message)
	}
	fmt.Fprintf(out, "Mission %s/%s, generation %d (status for %d)\nReady: %s\nTargeted %d, applied %d, ready %d, failed %d, unknown %d\n\n",
		m.Namespace, m.Name, m.Generation, m.Status.ObservedGeneration, ready, s.Targeted, s.Applied, s.Ready, s.Failed, s.Unknown)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tPHASE\tGENERATION\tUPDATED\tMESSAGE")
	for _, c := range m.Status.Clusters {
		updated := "-"
		if c.LastUpdateTime != nil {
			updated = duration.HumanDuration(now.Sub(c.LastUpdateTime.Time)) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", c.Cluster, c.Phase, c.Generation, updated, dash(c.Message))
	}
	if m.Status.ClustersOmitted > 0 {
		fmt.Fprintf(tw, "(%d more clusters not listed)\n", m.Status.ClustersOmitted)
	}
	return tw.Flush()
}

func newGetMissionsCommand() *cobra.Command {
	var f clusterFlags
	var ns, output string
	var all bool
	cmd := &cobra.Command{
		Use:     "missions",
		Aliases: []string{"mission", "mis"},
		Short:   "List missions with their per-cluster counts",
		Example: `  fornaxctl get missions -A
  fornaxctl get missions -n shop
  fornaxctl get missions -n shop -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, _, c, err := f.clients()
			if err != nil {
				return err
			}
			list := &edgev1alpha1.MissionList{}
			var opts []client.ListOption
			if !all {
				opts = append(opts, client.InNamespace(ns))
			}
			if err := c.List(cmd.Context(), list, opts...); err != nil {
				return fmt.Errorf("listing missions: %w", err)
			}
			list.SetGroupVersionKind(edgev1alpha1.GroupVersion.WithKind("MissionList"))
			if done, err := printStructured(cmd.OutOrStdout(), output, list); done {
				return err
			}
			return printMissions(cmd.OutOrStdout(), list.Items, output == "wide", time.Now())
		},
	}
	f.add(cmd)
	missionNamespaceFlag(cmd, &ns, "namespace of the missions")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "missions of every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, wide, yaml or json")
	return cmd
}

// printMissions prints the missions table; wide adds the placement, the
// resources and the generation the status is for.
func printMissions(out io.Writer, missions []edgev1alpha1.Mission, wide bool, now time.Time) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	head := "NAMESPACE\tNAME\tTARGETED\tREADY\tFAILED\tUNKNOWN\tSTATUS\tAGE"
	if wide {
		head += "\tGENERATION\tRESOURCES\tPLACEMENT"
	}
	fmt.Fprintln(tw, head)
	for _, m := range missions {
		st := "-"
		if c := meta.FindStatusCondition(m.Status.Conditions, edgev1alpha1.MissionReady); c != nil {
			st = c.Reason
		}
		s := m.Status.Summary
		line := fmt.Sprintf("%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s", m.Namespace, m.Name, s.Targeted, s.Ready, s.Failed, s.Unknown,
			st, duration.HumanDuration(now.Sub(m.CreationTimestamp.Time)))
		if wide {
			line += fmt.Sprintf("\t%d/%d\t%d\t%s", m.Status.ObservedGeneration, m.Generation, len(m.Spec.Resources), placementText(m.Spec.Placement))
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// placementText says in a few words what a placement selects.
func placementText(p edgev1alpha1.Placement) string {
	var parts []string
	if len(p.Clusters) > 0 {
		parts = append(parts, "clusters="+strings.Join(p.Clusters, ","))
	}
	if p.ClusterSelector != nil {
		if sel, err := metav1.LabelSelectorAsSelector(p.ClusterSelector); err == nil {
			parts = append(parts, "selector="+sel.String())
		}
	}
	if len(p.Subtrees) > 0 {
		parts = append(parts, "subtrees="+strings.Join(p.Subtrees, ","))
	}
	if len(p.Exclude) > 0 {
		parts = append(parts, "exclude="+strings.Join(p.Exclude, ","))
	}
	if len(parts) == 0 {
		return "all clusters"
	}
	return strings.Join(parts, " ")
}

// waitMissionReady polls a mission until it is Ready for its current
// generation, writing a progress line to progress whenever what it shows
// changes. It returns the last mission read, and an error saying where it
// stands when timeout passes first.
func waitMissionReady(ctx context.Context, c client.Client, key client.ObjectKey, timeout time.Duration, progress io.Writer) (*edgev1alpha1.Mission, error) {
	start := time.Now()
	var last *edgev1alpha1.Mission
	var shown string
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		m := &edgev1alpha1.Mission{}
		if err := c.Get(ctx, key, m); err != nil {
			if apierrors.IsNotFound(err) {
				return false, fmt.Errorf("mission %s was deleted while waiting", key)
			}
			return false, nil // a passing API error: try again
		}
		last = m
		if line := missionProgress(m); line != shown {
			shown = line
			fmt.Fprintf(progress, "[%3.0fs] %s\n", time.Since(start).Seconds(), line)
		}
		return missionReady(m), nil
	})
	if err != nil {
		if last != nil && !missionReady(last) && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return last, fmt.Errorf("mission %s not Ready after %s: %s (the table shows each cluster; 'fornaxctl describe cluster NAME' shows why a cluster lags)", key, timeout, missionProgress(last))
		}
		return last, fmt.Errorf("waiting for mission %s: %w", key, err)
	}
	return last, nil
}

// missionReady tells whether a mission's status says Ready for its current
// generation.
func missionReady(m *edgev1alpha1.Mission) bool {
	c := meta.FindStatusCondition(m.Status.Conditions, edgev1alpha1.MissionReady)
	return c != nil && c.Status == metav1.ConditionTrue && m.Status.ObservedGeneration == m.Generation && c.ObservedGeneration == m.Generation
}

// missionProgress is one line on where a mission stands. It is pure.
func missionProgress(m *edgev1alpha1.Mission) string {
	s := m.Status.Summary
	if m.Status.ObservedGeneration != m.Generation {
		return fmt.Sprintf("generation %d: waiting for the hub to place it", m.Generation)
	}
	line := fmt.Sprintf("generation %d: ready in %d of %d clusters (applied %d, failed %d, unknown %d)",
		m.Generation, s.Ready, s.Targeted, s.Applied, s.Failed, s.Unknown)
	if c := meta.FindStatusCondition(m.Status.Conditions, edgev1alpha1.MissionReady); c != nil && c.Status != metav1.ConditionTrue {
		line += ": " + c.Message
	}
	return line
}

// missionNamespaceFlag adds -n/--namespace for the missions' namespace, as
// kubectl has it; -N/--mission-namespace, its earlier name, still works.
func missionNamespaceFlag(cmd *cobra.Command, ns *string, usage string) {
	cmd.Flags().StringVarP(ns, "namespace", "n", "default", usage)
	cmd.Flags().StringVarP(ns, "mission-namespace", "N", "default", usage)
	_ = cmd.Flags().MarkHidden("mission-namespace")
}
