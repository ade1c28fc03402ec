package fornaxctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/config/admission"
	"github.com/fornax-edge/fornax/config/crd"
	"github.com/fornax-edge/fornax/config/deploy"
	"github.com/fornax-edge/fornax/internal/bootstrap"
	"github.com/fornax-edge/fornax/internal/certs"
	"github.com/fornax-edge/fornax/internal/install"
	"github.com/fornax-edge/fornax/internal/join"
	"github.com/fornax-edge/fornax/internal/version"
)

// clusterFlags are the flags every command that talks to a cluster has.
type clusterFlags struct {
	kubeconfig string
	context    string
	namespace  string
}

func (f *clusterFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to act on (default: $KUBECONFIG or ~/.kube/config)")
	cmd.Flags().StringVar(&f.context, "context", "", "kubeconfig context to use (default: the current context)")
	cmd.Flags().StringVar(&f.namespace, "fornax-namespace", install.Namespace, "namespace of Fornax's own objects (hub CA, tokens, agent credentials)")
}

func (f *clusterFlags) config() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if f.kubeconfig != "" {
		rules.ExplicitPath = f.kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w (give --kubeconfig)", err)
	}
	return cfg, nil
}

func (f *clusterFlags) clients() (*rest.Config, kubernetes.Interface, client.Client, error) {
	cfg, err := f.config()
	if err != nil {
		return nil, nil, nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	scheme := runtime.NewScheme()
	if err := edgev1alpha1.AddToScheme(scheme); err != nil {
		return nil, nil, nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, kube, c, nil
}

func newInitCommand() *cobra.Command {
	var f clusterFlags
	var endpoint, name, image string
	var printOnly, middle bool
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Prepare this cluster to be a Fornax parent (CRDs, hub CA)",
		Long: `init installs Fornax's CRDs and admission policy, and creates the hub CA (Secret
fornax-system/fornax-hub-ca) unless it exists: an existing CA is kept, so running
init again never cuts off joined children. Then start fornaxd with --listen.

On a cluster that has already joined a parent (a middle cluster of the tree),
the cluster name defaults to the name it joined with.`,
		Example: `  # the root
  fornaxctl init --kubeconfig root.kubeconfig --cluster-name root --endpoint hub.example.com:7443

  # a middle cluster, after 'fornaxctl join --name eu ...'
  fornaxctl init --kubeconfig eu.kubeconfig --endpoint eu.example.com:7443`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			if printOnly {
				if endpoint == "" {
					return errors.New("--print needs --endpoint: the host:port where children will reach this hub goes into its serving certificate (--advertise)")
				}
				host := endpoint
				if h, _, err := net.SplitHostPort(endpoint); err == nil {
					host = h
				}
				dir := "hub"
				if middle {
					dir = "middle"
				}
				return printManifests(out, dir, deploy.Options{Image: image, ClusterName: name, Advertise: host})
			}
			cfg, kube, _, err := f.clients()
			if err != nil {
				return err
			}
			creds, err := join.Load(ctx, kube, f.namespace)
			switch {
			case errors.Is(err, join.ErrNotJoined):
			case err != nil:
				return err
			case !cmd.Flags().Changed("cluster-name"):
				name = creds.Cluster
			case name != creds.Cluster:
				return fmt.Errorf("this cluster joined %s as %q: a middle cluster keeps the name it joined with; drop --cluster-name or pass %q", creds.ParentAddress, creds.Cluster, creds.Cluster)
			}
			if err := install.CheckVersion(kube.Discovery()); err != nil {
				return err
			}
			fmt.Fprintln(out, "Installing Fornax's CRDs and admission policy")
			if err := install.API(ctx, cfg); err != nil {
				return err
			}
			ca, created, err := install.Hub(ctx, kube, f.namespace, name, endpoint)
			if err != nil {
				return err
			}
			verb := "Kept the existing"
			if created {
				verb = "Created the"
			}
			fmt.Fprintf(out, "%s hub CA: %s\n", verb, certs.Hash(ca.Cert))
			port := "7443"
			if i := strings.LastIndex(endpoint, ":"); i >= 0 {
				port = endpoint[i+1:]
			}
			fmt.Fprintf(out, "\nNext:\n  1. start the hub:  fornaxd --kubeconfig <this cluster> --cluster-name %s --listen :%s\n  2. create a join token:  fornaxctl token create\n", name, port)
			if endpoint == "" {
				fmt.Fprintln(out, "\nNo --endpoint given: 'token create' will need --endpoint to print a complete join command.")
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "host:port where children reach this cluster's fornaxd (printed in join commands)")
	cmd.Flags().StringVar(&name, "cluster-name", "root", "this cluster's name in the tree (default: the name it joined with, else root)")
	cmd.Flags().BoolVar(&printOnly, "print", false, "print the manifests that run fornaxd here (CRDs, admission policy, RBAC, Deployment, Service, PodDisruptionBudget) for GitOps, and change nothing; the hub CA still comes from a plain 'fornaxctl init'")
	cmd.Flags().StringVar(&image, "image", deploy.ImageFor(version.Get()), "fornaxd image in the printed manifests (default: this fornaxctl's release, else latest)")
	cmd.Flags().BoolVar(&middle, "middle", false, "with --print: this cluster has joined a parent (a middle cluster): add the rights missions need (config/deploy/middle)")
	return cmd
}

// printManifests prints Fornax's CRDs and admission policy, then the
// manifests of config/deploy/<dir>.
func printManifests(out io.Writer, dir string, o deploy.Options) error {
	var docs [][]byte
	for _, fsys := range []fs.FS{crd.FS, admission.FS} {
		objs, err := install.Manifests(fsys)
		if err != nil {
			return err
		}
		for _, u := range objs {
			b, err := yaml.Marshal(u.Object)
			if err != nil {
				return err
			}
			docs = append(docs, b)
		}
	}
	rest, err := deploy.Render(dir, o)
	if err != nil {
		return err
	}
	docs = append(docs, rest)
	_, err = out.Write(bytes.Join(docs, []byte("---\n")))
	return err
}

func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage join tokens at a parent",
		Example: "  fornaxctl token create --ttl 2h\n  fornaxctl token list\n  fornaxctl token delete abcdef"}
	var f clusterFlags
	var ttl time.Duration
	var uses int
	var endpoint, desc string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an expiring join token and print the join command",
		Example: `  fornaxctl token create --ttl 1h
  fornaxctl token create --uses 10 --description "stores in Bavaria"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			_, kube, _, err := f.clients()
			if err != nil {
				return err
			}
			ca, err := install.HubCA(ctx, kube, f.namespace)
			if err != nil {
				return err
			}
			if endpoint == "" {
				if cm, err := kube.CoreV1().ConfigMaps(f.namespace).Get(ctx, install.HubConfigMap, metav1.GetOptions{}); err == nil {
					endpoint = cm.Data["endpoint"]
				}
			}
			token, t, err := bootstrap.Create(ctx, kube, f.namespace, ttl, uses, desc)
			if err != nil {
				return err
			}
			if endpoint == "" {
				endpoint = "<parent host:port>"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Token %s valid until %s for %d join(s). In the child cluster, run:\n", t.ID, t.Expires.Format(time.RFC3339), t.UsesRemaining)
			fmt.Fprintf(cmd.OutOrStdout(), "fornaxctl join --parent %s --token %s --ca-hash %s --name <CLUSTER-NAME>\n", endpoint, token, certs.Hash(ca.Cert))
			return nil
		},
	}
	f.add(create)
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token stays valid")
	create.Flags().IntVar(&uses, "uses", 1, "how many clusters may join with it")
	create.Flags().StringVar(&endpoint, "endpoint", "", "host:port of this cluster's fornaxd for the join command (default: from 'fornaxctl init')")
	create.Flags().StringVar(&desc, "description", "", "what the token is for")

	var lf clusterFlags
	var listOutput string
	list := &cobra.Command{
		Use: "list", Short: "List join tokens (never their secrets)", Args: cobra.NoArgs,
		Example: "  fornaxctl token list --kubeconfig root.kubeconfig\n  fornaxctl token list -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, kube, _, err := lf.clients()
			if err != nil {
				return err
			}
			tokens, err := bootstrap.List(cmd.Context(), kube, lf.namespace)
			if err != nil {
				return err
			}
			if done, err := printStructured(cmd.OutOrStdout(), listOutput, tokens); done {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tEXPIRES\tUSES-LEFT\tDESCRIPTION")
			for _, t := range tokens {
				exp := t.Expires.Format(time.RFC3339)
				if time.Now().After(t.Expires) {
					exp += " (expired)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", t.ID, exp, t.UsesRemaining, t.Description)
			}
			return tw.Flush()
		},
	}
	lf.add(list)
	list.Flags().StringVarP(&listOutput, "output", "o", "table", "table, yaml or json")
	var df clusterFlags
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete a join token", Args: cobra.ExactArgs(1),
		Example: "  # the ID is the part of the token before the dot\n  fornaxctl token delete abcdef",
		RunE: func(cmd *cobra.Command, args []string) error {
			_, kube, _, err := df.clients()
			if err != nil {
				return err
			}
			if err := bootstrap.Delete(cmd.Context(), kube, df.namespace, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s deleted\n", args[0])
			return nil
		},
	}
	df.add(del)
	cmd.AddCommand(create, list, del)
	return cmd
}

func newJoinCommand() *cobra.Command {
	var f clusterFlags
	var req join.Request
	var labels []string
	var printOnly, gatewayNode bool
	var image string
	cmd := &cobra.Command{
		Use:   "join",
		Short: "Join this cluster to a parent with a token",
		Long: `join presents a token to the parent's fornaxd over TLS pinned to the parent's CA
hash, receives a client certificate naming this cluster, and stores it as the
Secret fornax-system/fornax-agent in this cluster. It also installs Fornax's CRDs
here, so this cluster can later be a parent itself. Then start fornaxd in this
cluster: its agent role connects to the parent.`,
		Example: `  fornaxctl join --kubeconfig edge.kubeconfig --parent hub.example.com:7443 \
    --token abcdef.0123456789abcdef --ca-hash sha256:... --name berlin-3 \
    --labels topology.fornax.io/region=eu,topology.fornax.io/site=berlin-3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			if printOnly {
				dir := "agent"
				if gatewayNode {
					dir = "gateway"
				}
				return printManifests(out, dir, deploy.Options{Image: image})
			}
			if req.Parent == "" || req.Token == "" || req.CAHash == "" || req.Name == "" {
				return fmt.Errorf("--parent, --token, --ca-hash and --name are required: copy the command printed by 'fornaxctl token create' at the parent")
			}
			l, err := parseLabels(labels)
			if err != nil {
				return err
			}
			req.Labels = l
			cfg, kube, _, err := f.clients()
			if err != nil {
				return err
			}
			// Before the token is spent: an old cluster could not take the CRDs.
			if err := install.CheckVersion(kube.Discovery()); err != nil {
				return err
			}
			uid, err := join.ClusterUID(ctx, kube)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Joining %s to the parent at %s\n", req.Name, req.Parent)
			creds, err := join.Join(ctx, req, uid)
			if err != nil {
				return err
			}
			if err := join.Save(ctx, kube, f.namespace, creds); err != nil {
				return err
			}
			if err := install.API(ctx, cfg); err != nil {
				return fmt.Errorf("joined, but installing Fornax's CRDs here failed: %w", err)
			}
			fmt.Fprintf(out, "Joined: %s is a child of %s. Start fornaxd in this cluster to connect:\n  fornaxd --kubeconfig <this cluster>\n", req.Name, creds.ParentName)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&req.Parent, "parent", "", "host:port of the parent's fornaxd")
	cmd.Flags().StringVar(&req.Token, "token", "", "join token from 'fornaxctl token create'")
	cmd.Flags().StringVar(&req.CAHash, "ca-hash", "", "the parent's CA hash, sha256:<hex>, from 'fornaxctl token create'")
	cmd.Flags().StringVar(&req.Name, "name", "", "this cluster's name in the tree (unique, a DNS label)")
	cmd.Flags().StringSliceVar(&labels, "labels", nil, "labels for this cluster's EdgeCluster, k=v,k=v (topology: region, site, org, ...)")
	cmd.Flags().BoolVar(&printOnly, "print", false, "print the manifests that run fornaxd here (CRDs, admission policy, RBAC incl. what missions may deploy, Deployment, PodDisruptionBudget) for GitOps, and change nothing; the join itself still needs a plain 'fornaxctl join'")
	cmd.Flags().StringVar(&image, "image", deploy.ImageFor(version.Get()), "fornaxd image in the printed manifests (default: this fornaxctl's release, else latest)")
	cmd.Flags().BoolVar(&gatewayNode, "gateway", false, "with --print: the variant for a cluster that takes part in VPCs (fornaxd with the gateway role on the node labelled network.fornax.io/gateway=true, and fornax-cni installed there)")
	return cmd
}

func parseLabels(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q is not key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

func newGetCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "get", Short: "Show Fornax objects",
		Example: "  fornaxctl get clusters --tree\n  fornaxctl get missions -A"}
	var f clusterFlags
	var output string
	var tree bool
	clusters := &cobra.Command{
		Use:     "clusters",
		Aliases: []string{"cluster", "ec"},
		Short:   "List the clusters below this one",
		Example: `  fornaxctl get clusters
  fornaxctl get clusters --tree
  fornaxctl get clusters -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tree && output != "table" {
				return fmt.Errorf("--tree draws the tree and takes no -o %s: drop one of them", output)
			}
			_, _, c, err := f.clients()
			if err != nil {
				return err
			}
			list := &edgev1alpha1.EdgeClusterList{}
			if err := c.List(cmd.Context(), list); err != nil {
				return fmt.Errorf("listing EdgeClusters: %w (is this a Fornax cluster? run 'fornaxctl init')", err)
			}
			sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Status.Path < list.Items[j].Status.Path })
			if tree {
				printTree(cmd.OutOrStdout(), list, time.Now())
				return nil
			}
			return printClusters(cmd.OutOrStdout(), list, output, time.Now())
		},
	}
	f.add(clusters)
	clusters.Flags().StringVarP(&output, "output", "o", "table", "table, wide, yaml or json")
	clusters.Flags().BoolVar(&tree, "tree", false, "draw the tree below this cluster with health, nodes and missions")
	cmd.AddCommand(clusters, newGetMissionsCommand())
	return cmd
}

// printStructured prints obj as YAML or JSON when the output format asks
// for it, and says whether it did; other formats are the caller's (a table).
func printStructured(out io.Writer, output string, obj any) (bool, error) {
	switch output {
	case "yaml":
		b, err := yaml.Marshal(obj)
		if err != nil {
			return true, err
		}
		_, err = out.Write(b)
		return true, err
	case "json":
		b, err := json.MarshalIndent(obj, "", "  ")
		if err != nil {
			return true, err
		}
		_, err = fmt.Fprintln(out, string(b))
		return true, err
	case "table", "wide", "":
		return false, nil
	default:
		return true, fmt.Errorf("unknown output format %q: use table, wide, yaml or json", output)
	}
}

func printClusters(out io.Writer, list *edgev1alpha1.EdgeClusterList, output string, now time.Time) error {
	if done, err := printStructured(out, output, list); done {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	head := "NAME\tPARENT\tSTATUS\tDISTRO\tVERSION\tNODES\tLAST-SEEN\tAGE"
	if output == "wide" {
		head += "\tPATH\tREADY-REASON\tFORNAX"
	}
	fmt.Fprintln(tw, head)
	for _, ec := range list.Items {
		st := ec.Status
		status := clusterHealth(&ec)
		nodes := "-"
		if st.Nodes != nil {
			nodes = fmt.Sprintf("%d/%d", st.Nodes.Ready, st.Nodes.Total)
		}
		seen := "-"
		if st.LastHeartbeatTime != nil {
			seen = duration.HumanDuration(now.Sub(st.LastHeartbeatTime.Time)) + " ago"
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", ec.Name, dash(st.Parent), status, dash(string(st.Distro)),
			dash(st.KubernetesVersion), nodes, seen, duration.HumanDuration(now.Sub(ec.CreationTimestamp.Time)))
		if output == "wide" {
			reason := "-"
			if r := meta.FindStatusCondition(st.Conditions, edgev1alpha1.EdgeClusterReady); r != nil {
				reason = r.Reason
			}
			line += "\t" + dash(st.Path) + "\t" + reason + "\t" + dash(st.AgentVersion)
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// clusterHealth is one word for a cluster: Ready, NotReady, Offline, Pending.
func clusterHealth(ec *edgev1alpha1.EdgeCluster) string {
	st := ec.Status
	status := string(st.State)
	if status == "" {
		status = "Pending"
	}
	if r := meta.FindStatusCondition(st.Conditions, edgev1alpha1.EdgeClusterReady); r != nil && st.State == edgev1alpha1.StateConnected {
		if r.Status == metav1.ConditionTrue {
			status = "Ready"
		} else {
			status = "NotReady"
		}
	}
	return status
}

// printTree draws the clusters as the tree their parents make, e.g.
//
//	eu  Ready  k8s v1.37.1  nodes 1/1  missions 2/2
//	├── berlin  Ready  ...
//	│   └── berlin-line-1  Offline  last seen 2m ago
//	└── paris  Ready  ...
func printTree(out io.Writer, list *edgev1alpha1.EdgeClusterList, now time.Time) {
	byName := map[string]*edgev1alpha1.EdgeCluster{}
	children := map[string][]*edgev1alpha1.EdgeCluster{}
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	var tops []*edgev1alpha1.EdgeCluster
	for i := range list.Items {
		ec := &list.Items[i]
		if _, ok := byName[ec.Status.Parent]; ok {
			children[ec.Status.Parent] = append(children[ec.Status.Parent], ec)
		} else {
			tops = append(tops, ec)
		}
	}
	line := func(ec *edgev1alpha1.EdgeCluster) string {
		st := ec.Status
		parts := []string{ec.Name, clusterHealth(ec)}
		if st.Distro != "" || st.KubernetesVersion != "" {
			parts = append(parts, strings.TrimSpace(string(st.Distro)+" "+st.KubernetesVersion))
		}
		if st.Nodes != nil {
			parts = append(parts, fmt.Sprintf("nodes %d/%d", st.Nodes.Ready, st.Nodes.Total))
		}
		if st.Missions != nil {
			parts = append(parts, fmt.Sprintf("missions %d/%d ready", st.Missions.Ready, st.Missions.Total))
		}
		if st.State != edgev1alpha1.StateConnected && st.LastHeartbeatTime != nil {
			parts = append(parts, "last seen "+duration.HumanDuration(now.Sub(st.LastHeartbeatTime.Time))+" ago")
		}
		return strings.Join(parts, "  ")
	}
	var walk func(ec *edgev1alpha1.EdgeCluster, prefix string, last, top bool)
	walk = func(ec *edgev1alpha1.EdgeCluster, prefix string, last, top bool) {
		branch, next := "├── ", prefix+"│   "
		if last {
			branch, next = "└── ", prefix+"    "
		}
		if top {
			branch, next = "", ""
		}
		fmt.Fprintln(out, prefix+branch+line(ec))
		kids := children[ec.Name]
		for i, k := range kids {
			walk(k, next, i == len(kids)-1, false)
		}
	}
	if len(tops) > 0 && tops[0].Status.Parent != "" {
		fmt.Fprintln(out, tops[0].Status.Parent)
		for i, t := range tops {
			walk(t, "", i == len(tops)-1, false)
		}
		return
	}
	for _, t := range tops {
		walk(t, "", true, true)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newRemoveCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "remove", Short: "Remove Fornax objects",
		Example: "  fornaxctl remove cluster berlin-3"}
	var f clusterFlags
	cluster := &cobra.Command{
		Use:   "cluster NAME",
		Short: "Remove a child cluster and revoke its certificate",
		Long: `remove cluster deletes the child's EdgeCluster at this parent. Its certificate is
revoked at once: an open link is closed, and reconnects are refused until the
cluster joins again with a new token. Nothing is deleted in the child cluster.`,
		Example: `  fornaxctl remove cluster berlin-3`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, _, c, err := f.clients()
			if err != nil {
				return err
			}
			ec := &edgev1alpha1.EdgeCluster{ObjectMeta: metav1.ObjectMeta{Name: args[0]}}
			if err := c.Delete(cmd.Context(), ec); err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("no cluster %q below this cluster: see 'fornaxctl get clusters'", args[0])
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster %s removed; its certificate is revoked\n", args[0])
			return nil
		},
	}
	f.add(cluster)
	cmd.AddCommand(cluster)
	return cmd
}
