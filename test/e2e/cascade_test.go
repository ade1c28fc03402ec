package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

// cascade is the tree of TestCascade: root → {eu, us}; eu → {berlin, paris};
// berlin → {berlin-line-1}.
var cascadeParents = map[string]string{"eu": "root", "us": "root", "berlin": "eu", "paris": "eu", "berlin-line-1": "berlin"}

// joinBelow joins cluster name to parent (the root or a middle cluster) with
// fornaxctl exactly as an operator would, and starts its fornaxd; a middle
// cluster is also initialised as a parent and serves its own children.
func (tr *tree) joinBelow(t testing.TB, name, parent, labels string, middle bool, addrs map[string]string, extra ...string) {
	t.Helper()
	pcfg := tr.root.Kubeconfig
	if parent != "root" {
		pcfg = tr.edges[parent].Kubeconfig
	}
	out := fornaxctl(t, "token", "create", "--kubeconfig", pcfg)
	m := joinRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("token create at %s printed no join command:\n%s", parent, out)
	}
	args := []string{"join", "--kubeconfig", tr.edges[name].Kubeconfig, "--parent", m[1], "--token", m[2], "--ca-hash", m[3], "--name", name}
	if labels != "" {
		args = append(args, "--labels", labels)
	}
	fornaxctl(t, args...)
	if !middle {
		tr.startAgent(t, name, extra...)
		return
	}
	addrs[name] = freeAddr(t)
	if s := tr.sites[name]; s != nil {
		addrs[name] = siteAddr(s)
	}
	// init on a joined cluster takes the name it joined with.
	if out := fornaxctl(t, "init", "--kubeconfig", tr.edges[name].Kubeconfig, "--endpoint", addrs[name]); !strings.Contains(out, "--cluster-name "+name+" ") {
		t.Fatalf("init at %s did not default to the joined name:\n%s", name, out)
	}
	tr.startAgent(t, name, append([]string{"--listen", addrs[name]}, extra...)...)
	waitFor(t, 30*time.Second, name+"'s hub to listen", func(ctx context.Context) (bool, error) {
		var dl net.Dialer
		conn, err := dl.DialContext(ctx, "tcp", addrs[name])
		if err != nil {
			return false, nil
		}
		return true, conn.Close()
	})
	// Its children's joins ask up the tree whether their names are free: wait
	// for its uplink.
	waitFor(t, 60*time.Second, name+" Connected at the root", func(ctx context.Context) (bool, error) {
		ec, err := tr.ec(t, ctx, name)
		return err == nil && condStatus(ec, edgev1alpha1.EdgeClusterConnected) == metav1.ConditionTrue, nil
	})
}

// TestCascade builds a tree of depth 3 with fornaxctl and checks what the root
// shows and where missions land.
func TestCascade(t *testing.T) {
	node := []localcluster.NodeGroup{{Name: "n", Count: 1}}
	tr := newTree(t, nil,
		localcluster.Options{Name: "root"},
		localcluster.Options{Name: "eu", NodeGroups: node},
		localcluster.Options{Name: "us", NodeGroups: node},
		localcluster.Options{Name: "berlin", NodeGroups: node},
		localcluster.Options{Name: "paris", Flavor: localcluster.FlavorK3s, NodeGroups: node},
		localcluster.Options{Name: "berlin-line-1", Flavor: localcluster.FlavorK3s, NodeGroups: node},
	)
	ctx := t.Context()
	addrs := map[string]string{}
	began := time.Now()
	tr.joinBelow(t, "eu", "root", "topology.fornax.io/region=eu", true, addrs)
	tr.joinBelow(t, "us", "root", "topology.fornax.io/region=us,tier=edge", false, addrs)
	tr.joinBelow(t, "berlin", "eu", "topology.fornax.io/site=berlin", true, addrs)
	tr.joinBelow(t, "paris", "eu", "topology.fornax.io/site=paris,tier=edge", false, addrs)
	tr.joinBelow(t, "berlin-line-1", "berlin", "topology.fornax.io/zone=line-1", false, addrs)

	// The root sees the whole tree, each cluster Ready with its parent, path
	// and depth, and the labels it inherits.
	wantPath := map[string]string{"eu": "root/eu", "us": "root/us", "berlin": "root/eu/berlin",
		"paris": "root/eu/paris", "berlin-line-1": "root/eu/berlin/berlin-line-1"}
	waitFor(t, 90*time.Second, "every cluster of the tree Ready at the root with its path", func(ctx context.Context) (bool, error) {
		for name, path := range wantPath {
			ec, err := tr.ec(t, ctx, name)
			if err != nil {
				return false, err
			}
			if condStatus(ec, edgev1alpha1.EdgeClusterReady) != metav1.ConditionTrue || ec.Status.Path != path ||
				ec.Status.Parent != cascadeParents[name] || int(ec.Status.Depth) != strings.Count(path, "/") {
				return false, fmt.Errorf("%s: ready %s, parent %q, path %q, depth %d", name,
					condStatus(ec, edgev1alpha1.EdgeClusterReady), ec.Status.Parent, ec.Status.Path, ec.Status.Depth)
			}
		}
		return true, nil
	})
	t.Logf("a tree of depth 3 joined and Ready at the root %s after the first join", time.Since(began).Round(100*time.Millisecond))
	line, err := tr.ec(t, ctx, "berlin-line-1")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"topology.fornax.io/region": "eu", "topology.fornax.io/site": "berlin",
		"topology.fornax.io/zone": "line-1", edgev1alpha1.LabelParent: "berlin", edgev1alpha1.LabelDepth: "3"} {
		if line.Labels[k] != v {
			t.Errorf("berlin-line-1 at the root: label %s=%q, want %q (labels %v)", k, line.Labels[k], v, line.Labels)
		}
	}
	tree := fornaxctl(t, "get", "clusters", "--tree", "--kubeconfig", tr.root.Kubeconfig)
	t.Logf("fornaxctl get clusters --tree:\n%s", tree)
	// The same through kubectl, fornaxctl installed as the plugin kubectl-fornax.
	plugins := t.TempDir()
	if err := os.Symlink(fornaxctlBin, filepath.Join(plugins, "kubectl-fornax")); err != nil {
		t.Fatal(err)
	}
	bin, err := localcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	plugin := exec.CommandContext(ctx, filepath.Join(bin, localcluster.BinKubectl), "fornax", "get", "clusters", "--tree", "--kubeconfig", tr.root.Kubeconfig)
	plugin.Env = append(os.Environ(), "PATH="+plugins+string(os.PathListSeparator)+os.Getenv("PATH"))
	if out, err := plugin.CombinedOutput(); err != nil || !strings.Contains(string(out), "berlin-line-1  Ready") {
		t.Errorf("kubectl fornax get clusters --tree: %v\n%s", err, out)
	}
	if !strings.Contains(tree, "│   └── berlin-line-1  Ready") && !strings.Contains(tree, "    └── berlin-line-1  Ready") {
		t.Errorf("the tree does not show berlin-line-1 Ready under berlin:\n%s", tree)
	}

	// Names are unique in the whole tree: a join at berlin under a name used
	// in another branch (us, under the root) or by a cousin (paris, under eu)
	// is refused with the place of the other cluster. (The joining cluster
	// here is the root's own API server: a refused join writes nothing.)
	for name, where := range map[string]string{"us": "root/us", "paris": "root/eu/paris"} {
		out := fornaxctl(t, "token", "create", "--kubeconfig", tr.edges["berlin"].Kubeconfig)
		m := joinRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no join command:\n%s", out)
		}
		stdout, stderr, err := fornaxctlErr(t, "join", "--kubeconfig", tr.root.Kubeconfig, "--parent", m[1], "--token", m[2], "--ca-hash", m[3], "--name", name)
		if err == nil || !strings.Contains(stdout+stderr, "taken by cluster "+where) {
			t.Errorf("joining berlin as %q: %v\n%s%s", name, err, stdout, stderr)
		}
	}

	// A middle cluster keeps the name it joined with.
	if stdout, stderr, err := fornaxctlErr(t, "init", "--kubeconfig", tr.edges["eu"].Kubeconfig, "--cluster-name", "europe"); err == nil ||
		!strings.Contains(stderr, `joined`) || !strings.Contains(stderr, `as "eu"`) {
		t.Errorf("init --cluster-name europe at eu: %v\n%s%s", err, stdout, stderr)
	}

	// Missions from the root land exactly where selected, at any depth.
	for _, name := range append(slices.Collect(maps.Keys(wantPath)), "root") {
		c := tr.root
		if name != "root" {
			c = tr.edges[name]
		}
		if _, err := c.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	cases := []struct {
		mission   string
		placement edgev1alpha1.Placement
		want      []string
	}{
		{"by-name-depth-3", edgev1alpha1.Placement{Clusters: []string{"berlin-line-1"}}, []string{"berlin-line-1"}},
		{"by-label-across-branches", edgev1alpha1.Placement{ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "edge"}}}, []string{"paris", "us"}},
		{"by-inherited-label", edgev1alpha1.Placement{ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"topology.fornax.io/region": "eu"}}},
			[]string{"berlin", "berlin-line-1", "eu", "paris"}},
		{"by-subtree", edgev1alpha1.Placement{Subtrees: []string{"berlin"}}, []string{"berlin", "berlin-line-1"}},
	}
	for _, tc := range cases {
		m := &edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Name: tc.mission, Namespace: "apps"},
			Spec: edgev1alpha1.MissionSpec{Placement: tc.placement, Resources: []runtime.RawExtension{
				raw(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "+tc.mission+"}\ndata: {from: root}")}}}
		if err := tr.rootCli.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range cases {
		created := time.Now()
		waitFor(t, 60*time.Second, tc.mission+" Ready at the root in "+strings.Join(tc.want, ", "), func(ctx context.Context) (bool, error) {
			got := &edgev1alpha1.Mission{}
			if err := tr.rootCli.Get(ctx, client.ObjectKey{Namespace: "apps", Name: tc.mission}, got); err != nil {
				return false, err
			}
			var ready []string
			for _, c := range got.Status.Clusters {
				if c.Phase == edgev1alpha1.PhaseReady {
					ready = append(ready, c.Cluster)
				}
			}
			slices.Sort(ready)
			if int(got.Status.Summary.Targeted) != len(tc.want) || !slices.Equal(ready, tc.want) {
				return false, fmt.Errorf("targeted %d, ready in %v", got.Status.Summary.Targeted, ready)
			}
			return true, nil
		})
		for name := range wantPath {
			_, err := tr.edges[name].Client().CoreV1().ConfigMaps("apps").Get(ctx, tc.mission, metav1.GetOptions{})
			if has, want := err == nil, slices.Contains(tc.want, name); has != want {
				t.Errorf("%s: ConfigMap in %s: %v, want %v (%v)", tc.mission, name, has, want, err)
			}
		}
		t.Logf("%s: in exactly %v, Ready at the root (%s)", tc.mission, tc.want, time.Since(created).Round(100*time.Millisecond))
	}
	// A middle cluster that is not a target relays: it holds the mission, applies nothing.
	relayed := &edgev1alpha1.Mission{}
	if err := edgeClient(t, tr.edges["eu"]).Get(ctx, client.ObjectKey{Namespace: "apps", Name: "by-name-depth-3"}, relayed); err != nil {
		t.Errorf("eu does not hold the mission it relays: %v", err)
	} else if relayed.Annotations["edge.fornax.io/targets"] != "berlin-line-1" {
		t.Errorf("eu holds by-name-depth-3 with targets %q", relayed.Annotations["edge.fornax.io/targets"])
	}
	waitFor(t, 30*time.Second, "eu marks the mission relayed, with the status of its subtree", func(ctx context.Context) (bool, error) {
		got := &edgev1alpha1.Mission{}
		if err := edgeClient(t, tr.edges["eu"]).Get(ctx, client.ObjectKey{Namespace: "apps", Name: "by-name-depth-3"}, got); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, edgev1alpha1.MissionRelayed)
		return c != nil && c.Status == metav1.ConditionTrue && got.Status.Summary.Ready == 1, nil
	})
	if _, err := tr.edges["eu"].Client().CoreV1().ConfigMaps("apps").Get(ctx, "by-name-depth-3", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("eu applied a mission it only relays: %v", err)
	}

	// Local autonomy: eu's operators deploy to their subtree; the root shows
	// it as local and never removes it.
	euCli := edgeClient(t, tr.edges["eu"])
	local := &edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Name: "eu-local", Namespace: "apps"},
		Spec: edgev1alpha1.MissionSpec{Placement: edgev1alpha1.Placement{Clusters: []string{"berlin", "paris"}},
			Resources: []runtime.RawExtension{raw(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: eu-local}\ndata: {from: eu}")}}}
	if err := euCli.Create(ctx, local); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "eu's local mission in berlin and paris, shown as local at the root", func(ctx context.Context) (bool, error) {
		for _, name := range []string{"berlin", "paris"} {
			if _, err := tr.edges[name].Client().CoreV1().ConfigMaps("apps").Get(ctx, "eu-local", metav1.GetOptions{}); err != nil {
				return false, nil
			}
			ec, err := tr.ec(t, ctx, name)
			if err != nil || !slices.ContainsFunc(ec.Status.LocalMissions, func(l edgev1alpha1.LocalMission) bool {
				return l.Name == "eu-local" && l.Origin == "eu"
			}) {
				return false, err
			}
		}
		return true, nil
	})
	if _, err := tr.edges["us"].Client().CoreV1().ConfigMaps("apps").Get(ctx, "eu-local", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("eu's local mission reached us: %v", err)
	}
	// A root mission update makes the root resend; eu's own mission stays.
	if err := tr.rootCli.Delete(ctx, &edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Name: "by-subtree", Namespace: "apps"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "by-subtree removed from berlin and berlin-line-1", func(ctx context.Context) (bool, error) {
		for _, name := range []string{"berlin", "berlin-line-1"} {
			if _, err := tr.edges[name].Client().CoreV1().ConfigMaps("apps").Get(ctx, "by-subtree", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, nil
			}
		}
		return true, nil
	})
	if err := euCli.Get(ctx, client.ObjectKeyFromObject(local), &edgev1alpha1.Mission{}); err != nil {
		t.Errorf("eu's local mission after root changes: %v", err)
	}

	// eu goes offline: it and its whole subtree are Unknown at the root, with
	// their missions unknown, never a stale Ready; back: all Ready again.
	tr.agents["eu"].Stop()
	subtree := []string{"eu", "berlin", "paris", "berlin-line-1"}
	waitFor(t, 60*time.Second, "eu's subtree offline and Unknown at the root", func(ctx context.Context) (bool, error) {
		for _, name := range subtree {
			ec, err := tr.ec(t, ctx, name)
			if err != nil {
				return false, err
			}
			if ec.Status.State == edgev1alpha1.StateConnected || condStatus(ec, edgev1alpha1.EdgeClusterReady) != metav1.ConditionUnknown || ec.Status.LastHeartbeatTime == nil {
				return false, fmt.Errorf("%s: state %s ready %s", name, ec.Status.State, condStatus(ec, edgev1alpha1.EdgeClusterReady))
			}
		}
		got := &edgev1alpha1.Mission{}
		if err := tr.rootCli.Get(ctx, client.ObjectKey{Namespace: "apps", Name: "by-name-depth-3"}, got); err != nil {
			return false, err
		}
		return got.Status.Summary.Unknown == 1 && got.Status.Summary.Ready == 0, nil
	})
	if ec, err := tr.ec(t, ctx, "us"); err != nil || condStatus(ec, edgev1alpha1.EdgeClusterReady) != metav1.ConditionTrue {
		t.Errorf("us while eu is offline: %v", err)
	}
	tr.startAgent(t, "eu", "--listen", addrs["eu"])
	waitFor(t, 90*time.Second, "the whole tree Ready again", func(ctx context.Context) (bool, error) {
		for _, name := range subtree {
			ec, err := tr.ec(t, ctx, name)
			if err != nil {
				return false, err
			}
			if condStatus(ec, edgev1alpha1.EdgeClusterReady) != metav1.ConditionTrue {
				return false, fmt.Errorf("%s: state %s, Ready %s", name, ec.Status.State, condStatus(ec, edgev1alpha1.EdgeClusterReady))
			}
		}
		got := &edgev1alpha1.Mission{}
		if err := tr.rootCli.Get(ctx, client.ObjectKey{Namespace: "apps", Name: "by-inherited-label"}, got); err != nil {
			return false, err
		}
		if got.Status.Summary.Ready != 4 {
			return false, fmt.Errorf("by-inherited-label: %+v", got.Status.Summary)
		}
		return true, nil
	})
}
