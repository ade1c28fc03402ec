package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/localcluster"
	"github.com/fornax-edge/fornax/internal/netlab"
)

// tree is a root and edge clusters joined with fornaxctl, with fornaxd running.
type tree struct {
	root    *localcluster.Cluster
	edges   map[string]*localcluster.Cluster
	hub     *localcluster.Daemon
	agents  map[string]*localcluster.Daemon
	addr    string // the hub's address
	rootCli client.Client
	sites   map[string]*netlab.Site // each cluster's network namespace, in the partition tests
	hubArgs []string                // the root hub's extra flags, for a restart
	// each agent's extra flags, for a restart
	agentArgs map[string][]string
}

// Short timers so that the tests observe link loss and grace periods quickly.
var (
	keepaliveArgs = []string{"--keepalive-time", "2s", "--keepalive-timeout", "2s"}
	readyGrace    = 6 * time.Second
)

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (tr *tree) startHub(t testing.TB, extra ...string) {
	t.Helper()
	args := []string{"--kubeconfig", tr.root.Kubeconfig, "--listen", tr.addr, "--cluster-name", "root",
		"--metrics-bind-address", "0", "--health-bind-address", "0", "--ready-grace", readyGrace.String(), "--log-level", logLevel()}
	if len(extra) == 0 {
		extra = keepaliveArgs
	}
	tr.hubArgs = extra
	d, err := tr.root.Run("fornaxd", fornaxdBin, append(args, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	tr.hub = d
	waitFor(t, 30*time.Second, "the hub to listen", func(ctx context.Context) (bool, error) {
		if d.Exited() {
			return false, fmt.Errorf("fornaxd exited:\n%s", d.Log(20))
		}
		var dl net.Dialer
		conn, err := dl.DialContext(ctx, "tcp", tr.addr)
		if err != nil {
			return false, err
		}
		return true, conn.Close()
	})
}

// startAgent starts fornaxd in an edge cluster (extra: more flags, e.g.
// --listen for a middle cluster).
func (tr *tree) startAgent(t testing.TB, name string, extra ...string) {
	t.Helper()
	c := tr.edges[name]
	args := append([]string{
		"--kubeconfig", c.Kubeconfig, "--report-interval", "1s", "--heartbeat-interval", "5s",
		"--metrics-bind-address", "0", "--health-bind-address", "0", "--log-level", logLevel(),
	}, keepaliveArgs...)
	d, err := c.Run("fornaxd", fornaxdBin, append(args, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	tr.agents[name] = d
	if tr.agentArgs == nil {
		tr.agentArgs = map[string][]string{}
	}
	tr.agentArgs[name] = extra
}

// crash kills a cluster's fornaxd with SIGKILL and starts it again with the
// same flags ("root": the root's hub).
func (tr *tree) crash(t testing.TB, name string) {
	t.Helper()
	if name == "root" {
		tr.hub.Kill()
		tr.startHub(t, tr.hubArgs...)
		return
	}
	tr.agents[name].Kill()
	tr.startAgent(t, name, tr.agentArgs[name]...)
}

// joinEdge joins an edge cluster to the root with fornaxctl, as an operator
// would (labels: k=v,k=v or empty), starts its agent and waits until the root
// shows it Ready.
func (tr *tree) joinEdge(t testing.TB, name, labels string) {
	t.Helper()
	parent, token, hash := tr.token(t)
	args := []string{"join", "--kubeconfig", tr.edges[name].Kubeconfig, "--parent", parent, "--token", token, "--ca-hash", hash, "--name", name}
	if labels != "" {
		args = append(args, "--labels", labels)
	}
	fornaxctl(t, args...)
	tr.startAgent(t, name)
	waitFor(t, 30*time.Second, name+" Ready at the root", func(ctx context.Context) (bool, error) {
		ec, err := tr.ec(t, ctx, name)
		return err == nil && condStatus(ec, edgev1alpha1.EdgeClusterReady) == metav1.ConditionTrue, err
	})
}

// logLevel is fornaxd's log level in tests: FORNAX_LOG_LEVEL, or info.
func logLevel() string {
	if l := os.Getenv("FORNAX_LOG_LEVEL"); l != "" {
		return l
	}
	return "info"
}

var joinRE = regexp.MustCompile(`fornaxctl join --parent (\S+) --token (\S+) --ca-hash (\S+) --name <CLUSTER-NAME>`)

// tokenFor creates a token at the root and returns (parent, token, caHash).
func (tr *tree) token(t testing.TB, args ...string) (string, string, string) {
	t.Helper()
	out := fornaxctl(t, append([]string{"token", "create", "--kubeconfig", tr.root.Kubeconfig}, args...)...)
	m := joinRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("token create printed no join command:\n%s", out)
	}
	return m[1], m[2], m[3]
}

func (tr *tree) ec(t testing.TB, ctx context.Context, name string) (*edgev1alpha1.EdgeCluster, error) {
	ec := &edgev1alpha1.EdgeCluster{}
	err := tr.rootCli.Get(ctx, client.ObjectKey{Name: name}, ec)
	return ec, err
}

func condStatus(ec *edgev1alpha1.EdgeCluster, typ string) metav1.ConditionStatus {
	if c := meta.FindStatusCondition(ec.Status.Conditions, typ); c != nil {
		return c.Status
	}
	return ""
}

// newTree starts clusters (the first is the root) in a temporary directory,
// runs 'fornaxctl init' at the root and starts its hub with hubArgs (default:
// the short keepalive of these tests).
func newTree(t testing.TB, hubArgs []string, opts ...localcluster.Options) *tree {
	t.Helper()
	dir := t.TempDir()
	for i := range opts {
		opts[i].Dir = filepath.Join(dir, opts[i].Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	clusters, err := localcluster.StartAll(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			// What fornaxd said, for the diagnosis (the directories go with the test).
			for _, c := range clusters {
				if raw, err := os.ReadFile(filepath.Join(c.Dir, "logs", "fornaxd.log")); err == nil {
					lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
					t.Logf("fornaxd of %s, last %d of %d lines:\n%s", c.Name, min(60, len(lines)), len(lines), strings.Join(lines[max(0, len(lines)-60):], "\n"))
				}
			}
		}
		for _, c := range clusters {
			if err := c.Stop(); err != nil {
				t.Errorf("stopping %s: %v", c.Name, err)
			}
		}
	})
	tr := &tree{root: clusters[0], edges: map[string]*localcluster.Cluster{}, agents: map[string]*localcluster.Daemon{}, addr: freeAddr(t)}
	if opts[0].NetNS != "" { // the root runs in its own network namespace: every port is free there
		tr.addr = net.JoinHostPort(opts[0].Host, "7443")
	}
	for _, c := range clusters[1:] {
		tr.edges[c.Name] = c
	}
	fornaxctl(t, "init", "--kubeconfig", tr.root.Kubeconfig, "--endpoint", tr.addr)
	tr.rootCli = edgeClient(t, tr.root)
	tr.startHub(t, hubArgs...)
	return tr
}

func startTree(t *testing.T) *tree {
	return newTree(t, nil,
		localcluster.Options{Name: "root"},
		localcluster.Options{Name: "berlin", NodeGroups: []localcluster.NodeGroup{{Name: "a", Count: 1}, {Name: "b", Count: 1}},
			NodeMonitorGracePeriod: 8 * time.Second},
		localcluster.Options{Name: "munich", NodeGroups: []localcluster.NodeGroup{{Name: "n", Count: 1}}},
		localcluster.Options{Name: "factory", Flavor: localcluster.FlavorK3s, NodeGroups: []localcluster.NodeGroup{{Name: "n", Count: 3}}},
	)
}

// TestLink joins three edge clusters to a root with fornaxctl, as an operator
// would, and checks what the root shows through node failure, agent loss and
// a hub restart.
func TestLink(t *testing.T) {
	tr := startTree(t)
	ctx := t.Context()

	labels := map[string]string{"berlin": "topology.fornax.io/region=eu,topology.fornax.io/site=berlin",
		"munich": "topology.fornax.io/region=eu", "factory": "topology.fornax.io/org=plants"}
	for _, name := range []string{"berlin", "munich", "factory"} {
		began := time.Now()
		parent, token, hash := tr.token(t)
		fornaxctl(t, "join", "--kubeconfig", tr.edges[name].Kubeconfig, "--parent", parent, "--token", token,
			"--ca-hash", hash, "--name", name, "--labels", labels[name])
		tr.startAgent(t, name)
		waitFor(t, 30*time.Second, name+" Ready at the root", func(ctx context.Context) (bool, error) {
			ec, err := tr.ec(t, ctx, name)
			return err == nil && condStatus(ec, edgev1alpha1.EdgeClusterReady) == metav1.ConditionTrue, err
		})
		t.Logf("%s joined and Ready at the root in %s", name, time.Since(began).Round(time.Millisecond))
	}

	want := map[string]struct {
		distro edgev1alpha1.Distro
		nodes  int32
	}{"berlin": {"k8s", 2}, "munich": {"k8s", 1}, "factory": {"k3s", 3}}
	version, err := tr.root.Client().Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	// The agents were built with fornaxctl, from this checkout: same version.
	agentVersion := strings.TrimSpace(fornaxctl(t, "version"))
	for name, w := range want {
		ec, err := tr.ec(t, ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		st := ec.Status
		if st.AgentVersion != agentVersion {
			t.Errorf("%s: agent version %q, want %q (what fornaxctl version says)", name, st.AgentVersion, agentVersion)
		}
		if st.State != edgev1alpha1.StateConnected || st.Parent != "root" || st.Path != "root/"+name || st.Depth != 1 ||
			st.Distro != w.distro || st.Nodes == nil || st.Nodes.Total != w.nodes || st.Nodes.Ready != w.nodes ||
			st.KubernetesVersion != version.GitVersion {
			t.Errorf("%s: status %+v; want Connected child of root, distro %s, %d/%d nodes, version %s",
				name, st, w.distro, w.nodes, w.nodes, version.GitVersion)
		}
		if q, ok := st.Allocatable["pods"]; !ok || q.Value() != int64(110*w.nodes) {
			t.Errorf("%s: allocatable pods %v, want %d", name, st.Allocatable, 110*w.nodes)
		}
		for k, v := range map[string]string{edgev1alpha1.LabelClusterName: name, edgev1alpha1.LabelParent: "root",
			edgev1alpha1.LabelDepth: "1", edgev1alpha1.LabelDistro: string(w.distro)} {
			if ec.Labels[k] != v {
				t.Errorf("%s: label %s=%q, want %q", name, k, ec.Labels[k], v)
			}
		}
	}
	if ec, _ := tr.ec(t, ctx, "berlin"); ec.Labels["topology.fornax.io/site"] != "berlin" {
		t.Errorf("berlin lost its join labels: %v", ec.Labels)
	}
	out := kubectl(t, tr.root, "get", "edgeclusters")
	t.Logf("kubectl get edgeclusters:\n%s", out)
	for name, w := range want {
		n := strconv.Itoa(int(w.nodes))
		if !regexp.MustCompile(`(?m)^` + name + `\s+root\s+Connected\s+True\s+` + regexp.QuoteMeta(version.GitVersion) + `\s+` + string(w.distro) + `\s+` + n + `\s+` + n + `\s`).MatchString(out) {
			t.Errorf("kubectl get edgeclusters has no Ready row for %s", name)
		}
	}
	t.Logf("fornaxctl get clusters:\n%s", fornaxctl(t, "get", "clusters", "--kubeconfig", tr.root.Kubeconfig))

	t.Run("node failure reaches the root", func(t *testing.T) {
		berlin := tr.edges["berlin"]
		if err := berlin.StopNodeGroup("b"); err != nil {
			t.Fatal(err)
		}
		var notReadyAt time.Time
		waitFor(t, time.Minute, "berlin's node b-0 NotReady in berlin", func(ctx context.Context) (bool, error) {
			n, err := berlin.Client().CoreV1().Nodes().Get(ctx, "b-0", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, c := range n.Status.Conditions {
				if c.Type == "Ready" && c.Status != "True" {
					notReadyAt = time.Now()
					return true, nil
				}
			}
			return false, nil
		})
		waitFor(t, 10*time.Second, "the root to show berlin with 1 of 2 nodes Ready", func(ctx context.Context) (bool, error) {
			ec, err := tr.ec(t, ctx, "berlin")
			return err == nil && ec.Status.Nodes != nil && ec.Status.Nodes.Ready == 1 && ec.Status.Nodes.Total == 2, err
		})
		t.Logf("node failure shown at the root %s after it happened in berlin (report interval 1s)", time.Since(notReadyAt).Round(time.Millisecond))
		if err := berlin.StartNodeGroup(ctx, "b"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("agent stopped and restarted", func(t *testing.T) {
		began := time.Now()
		tr.agents["munich"].Kill()
		waitFor(t, 15*time.Second, "munich Connected=False", func(ctx context.Context) (bool, error) {
			ec, err := tr.ec(t, ctx, "munich")
			return err == nil && condStatus(ec, edgev1alpha1.EdgeClusterConnected) == metav1.ConditionFalse &&
				ec.Status.State == edgev1alpha1.StateOffline, err
		})
		t.Logf("Connected=False %s after the agent died", time.Since(began).Round(time.Millisecond))
		ec, _ := tr.ec(t, ctx, "munich")
		if condStatus(ec, edgev1alpha1.EdgeClusterReady) != metav1.ConditionTrue {
			t.Errorf("Ready turned %s before the grace period ended", condStatus(ec, edgev1alpha1.EdgeClusterReady))
		}
		waitFor(t, readyGrace+10*time.Second, "munich Ready=Unknown after the grace period", func(ctx context.Context) (bool, error) {
			ec, err := tr.ec(t, ctx, "munich")
			return err == nil && condStatus(ec, edgev1alpha1.EdgeClusterReady) == metav1.ConditionUnknown, err
		})
		if d := time.Since(began); d < readyGrace {
			t.Errorf("Ready turned Unknown after %s, before the %s grace period", d, readyGrace)
		}
		tr.startAgent(t, "munich")
		waitFor(t, 30*time.Second, "munich Ready again without re-joining", func(ctx context.Context) (bool, error) {
			ec, err := tr.ec(t, ctx, "munich")
			return err == nil && condStatus(ec, edgev1alpha1.EdgeClusterReady) == metav1.ConditionTrue &&
				ec.Status.State == edgev1alpha1.StateConnected, err
		})
	})

	t.Run("hub restart", func(t *testing.T) {
		tr.hub.Kill()
		tr.startHub(t)
		waitFor(t, 60*time.Second, "every agent reconnected to the new hub", func(ctx context.Context) (bool, error) {
			log := tr.hub.Log(400)
			log = log[strings.LastIndex(log, "=== "):] // this run of fornaxd only
			return strings.Count(log, `"msg":"child connected"`) >= len(want), nil
		})
		waitFor(t, 10*time.Second, "every cluster Connected and Ready", func(ctx context.Context) (bool, error) {
			for name := range want {
				ec, err := tr.ec(t, ctx, name)
				if err != nil || ec.Status.State != edgev1alpha1.StateConnected || condStatus(ec, edgev1alpha1.EdgeClusterReady) != metav1.ConditionTrue {
					return false, err
				}
			}
			return true, nil
		})
		list := &edgev1alpha1.EdgeClusterList{}
		if err := tr.rootCli.List(ctx, list); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 3 {
			t.Errorf("%d EdgeClusters after the hub restart, want 3", len(list.Items))
		}
	})
}

// kubectl runs the pinned kubectl against a cluster.
func kubectl(t testing.TB, c *localcluster.Cluster, args ...string) string {
	t.Helper()
	bin, err := localcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, filepath.Join(bin, localcluster.BinKubectl), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
