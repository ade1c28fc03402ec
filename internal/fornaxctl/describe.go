package fornaxctl

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
)

func newDescribeCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "describe", Short: "Show one Fornax object in detail",
		Example: "  fornaxctl describe cluster factory-7"}
	var f clusterFlags
	cluster := &cobra.Command{
		Use:     "cluster NAME",
		Aliases: []string{"clusters", "ec"},
		Short:   "Show a cluster: place in the tree, health, nodes, missions and recent events",
		Long: `describe cluster shows what the parent knows of one cluster of the tree: its path,
state and conditions, version and nodes, the missions that target it and where
each stands there, missions created below it or orphaned in it, and the recent
Events the hub recorded (link up and down, readiness).`,
		Example: `  fornaxctl describe cluster factory-7
  kubectl fornax describe cluster factory-7`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, kube, c, err := f.clients()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ec := &edgev1alpha1.EdgeCluster{}
			if err := c.Get(ctx, client.ObjectKey{Name: args[0]}, ec); err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("no cluster %q below this cluster: see 'fornaxctl get clusters'", args[0])
				}
				return fmt.Errorf("reading EdgeCluster %s: %w", args[0], err)
			}
			missions := &edgev1alpha1.MissionList{}
			if err := c.List(ctx, missions); err != nil {
				return fmt.Errorf("listing missions: %w", err)
			}
			sel := fields.SelectorFromSet(fields.Set{"involvedObject.kind": "EdgeCluster", "involvedObject.name": ec.Name}).String()
			evs, err := kube.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: sel})
			if err != nil {
				return fmt.Errorf("listing events: %w", err)
			}
			return describeCluster(cmd.OutOrStdout(), ec, missions.Items, evs.Items, time.Now())
		},
	}
	f.add(cluster)
	cmd.AddCommand(cluster)
	return cmd
}

// describeCluster prints one cluster for 'describe cluster'. It is pure:
// what it prints depends only on its arguments.
func describeCluster(out io.Writer, ec *edgev1alpha1.EdgeCluster, missions []edgev1alpha1.Mission, events []corev1.Event, now time.Time) error {
	st := ec.Status
	ago := func(t *metav1.Time) string {
		if t == nil {
			return "never"
		}
		return duration.HumanDuration(now.Sub(t.Time)) + " ago"
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\n", ec.Name)
	fmt.Fprintf(tw, "Path:\t%s (depth %d, parent %s)\n", dash(st.Path), st.Depth, dash(st.Parent))
	fmt.Fprintf(tw, "Health:\t%s (state %s)\n", clusterHealth(ec), dash(string(st.State)))
	inherited := map[string]bool{}
	for _, k := range strings.Split(ec.Annotations["edge.fornax.io/inherited-labels"], ",") {
		inherited[k] = true
	}
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(ec.Labels)) {
		l := k + "=" + ec.Labels[k]
		if inherited[k] {
			l += " (inherited)"
		}
		labels = append(labels, l)
	}
	fmt.Fprintf(tw, "Labels:\t%s\n", dash(strings.Join(labels, "\n\t")))
	fmt.Fprintf(tw, "Kubernetes:\t%s\n", strings.TrimSpace(dash(st.KubernetesVersion)+" "+string(st.Distro)))
	fmt.Fprintf(tw, "Fornax agent:\t%s\n", dash(st.AgentVersion))
	if st.Nodes != nil {
		fmt.Fprintf(tw, "Nodes:\t%d of %d ready\n", st.Nodes.Ready, st.Nodes.Total)
	}
	if len(st.Allocatable) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(st.Allocatable)) {
			q := st.Allocatable[k]
			parts = append(parts, k+"="+q.String())
		}
		fmt.Fprintf(tw, "Allocatable:\t%s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(tw, "Last seen:\t%s (last report %s)\n", ago(st.LastHeartbeatTime), ago(st.LastReportTime))
	if ec.Spec.Unschedulable {
		fmt.Fprintf(tw, "Unschedulable:\ttrue (new missions keep off it)\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nConditions:")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tSINCE\tMESSAGE")
	for _, c := range st.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, ago(&c.LastTransitionTime), dash(c.Message))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nMissions:")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAMESPACE\tNAME\tPHASE\tGENERATION\tDRIFT\tMESSAGE")
	n := 0
	sort.Slice(missions, func(i, j int) bool {
		return missions[i].Namespace+"/"+missions[i].Name < missions[j].Namespace+"/"+missions[j].Name
	})
	for _, m := range missions {
		for _, c := range m.Status.Clusters {
			if c.Cluster == ec.Name {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%s\n", m.Namespace, m.Name, c.Phase, c.Generation, c.DriftCorrections, dash(c.Message))
				n++
			}
		}
	}
	if n == 0 {
		fmt.Fprintln(tw, "  (none targets it)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.LocalMissions) > 0 {
		fmt.Fprintln(out, "\nLocal missions (created below, read-only here):")
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAMESPACE\tNAME\tORIGIN\tPHASE")
		for _, l := range st.LocalMissions {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", l.Namespace, l.Name, l.Origin, l.Phase)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(st.OrphanedMissions) > 0 {
		fmt.Fprintln(out, "\nOrphaned missions (no parent knows them; create them again to keep them):")
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAMESPACE\tNAME\tSINCE\tDELETED AT")
		for _, o := range st.OrphanedMissions {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", o.Namespace, o.Name, ago(&o.Since), o.DeleteAfter.UTC().Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintln(out, "\nEvents:")
	if len(events) == 0 {
		fmt.Fprintln(out, "  <none>")
		return nil
	}
	when := func(e corev1.Event) time.Time {
		switch {
		case !e.EventTime.IsZero():
			return e.EventTime.Time
		case !e.LastTimestamp.IsZero():
			return e.LastTimestamp.Time
		}
		return e.CreationTimestamp.Time
	}
	sort.SliceStable(events, func(i, j int) bool { return when(events[i]).Before(when(events[j])) })
	if len(events) > 20 {
		events = events[len(events)-20:]
	}
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  AGE\tTYPE\tREASON\tMESSAGE")
	for _, e := range events {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", duration.HumanDuration(now.Sub(when(e))), e.Type, e.Reason, e.Message)
	}
	return tw.Flush()
}
