package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
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

	dto "github.com/prometheus/client_model/go"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/localcluster"
	"github.com/fornax-edge/fornax/internal/netlab"
)

// orphanGrace is the agents' --orphan-grace in the partition tests: short,
// so that a cut can outlast it.
const orphanGrace = 15 * time.Second

// partitionArgs are every agent's extra flags in the partition tests.
var partitionArgs = []string{"--orphan-grace", orphanGrace.String(), "--reconnect-max-delay", "4s", "--metrics-bind-address", ":9090"}

// newPartitionTree starts the tree of TestPartition, each site in its own
// network namespace: root, us and eu on the WAN; berlin on eu's LAN (cutting
// eu's uplink leaves berlin connected to eu). Root only.
func newPartitionTree(t *testing.T) (*tree, map[string]*netlab.Site) {
	t.Helper()
	if err := netlab.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	w, err := netlab.NewForProcess()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after the clusters' cleanup (LIFO): nothing runs in the namespaces any more
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	sites := map[string]*netlab.Site{}
	for _, name := range []string{"root", "us", "eu"} {
		if sites[name], err = w.AddSite(name); err != nil {
			t.Fatal(err)
		}
	}
	lan, err := sites["eu"].AddLAN()
	if err != nil {
		t.Fatal(err)
	}
	if sites["berlin"], err = w.AddSiteOn("berlin", lan); err != nil {
		t.Fatal(err)
	}
	in := func(o localcluster.Options) localcluster.Options {
		s := sites[o.Name]
		o.Host, o.NetNS, o.Dial = s.IP.String(), s.NetNSPath(), s.DialContext
		return o
	}
	tr := newTree(t, append(slices.Clone(keepaliveArgs), "--metrics-bind-address", ":9090"),
		in(localcluster.Options{Name: "root"}),
		in(localcluster.Options{Name: "us", NodeGroups: []localcluster.NodeGroup{{Name: "a", Count: 1}, {Name: "b", Count: 1}},
			NodeMonitorGracePeriod: 8 * time.Second, PodEvictionTimeout: 2 * time.Second}),
		in(localcluster.Options{Name: "eu", NodeGroups: []localcluster.NodeGroup{{Name: "n", Count: 1}}}),
		in(localcluster.Options{Name: "berlin", Flavor: localcluster.FlavorK3s, NodeGroups: []localcluster.NodeGroup{{Name: "n", Count: 1}}}),
	)
	tr.sites = sites
	addrs := map[string]string{}
	tr.joinBelow(t, "us", "root", "tier=edge", false, addrs, append(partitionArgs, "--log-level", "debug")...)
	tr.joinBelow(t, "eu", "root", "", true, addrs, partitionArgs...)
	tr.joinBelow(t, "berlin", "eu", "tier=edge", false, addrs, partitionArgs...)
	waitFor(t, 90*time.Second, "every cluster Ready at the root", func(ctx context.Context) (bool, error) {
		for _, name := range []string{"us", "eu", "berlin"} {
			ec, err := tr.ec(t, ctx, name)
			if err != nil || condStatus(ec, edgev1alpha1.EdgeClusterReady) != metav1.ConditionTrue {
				return false, err
			}
		}
		return true, nil
	})
	return tr, sites
}

// cm is a ConfigMap mission for the partition tests.
func cm(t testing.TB, name, value string, placement edgev1alpha1.Placement) *edgev1alpha1.Mission {
	return &edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Namespace: "partition", Name: name},
		Spec: edgev1alpha1.MissionSpec{Placement: placement,
			Resources: []runtime.RawExtension{raw(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "+name+"}\ndata: {v: \""+value+"\"}")}}}
}

// configMap reads a ConfigMap of the partition tests in a cluster ("" if absent).
func configMap(ctx context.Context, c *localcluster.Cluster, name string) (string, bool, error) {
	got, err := c.Client().CoreV1().ConfigMaps("partition").Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return got.Data["v"], true, nil
}

func missionReady(ctx context.Context, cli client.Client, name string) (bool, error) {
	m := &edgev1alpha1.Mission{}
	if err := cli.Get(ctx, client.ObjectKey{Namespace: "partition", Name: name}, m); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	c := meta.FindStatusCondition(m.Status.Conditions, edgev1alpha1.MissionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == m.Generation, nil
}

// applies counts the "mission applied" records of one mission in an agent's
// debug log (JSON): each is one apply of its resources.
func applies(t *testing.T, d *localcluster.Daemon, mission string) int {
	t.Helper()
	raw, err := os.ReadFile(d.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"msg":"mission applied"[^\n]*"mission":"partition/` + regexp.QuoteMeta(mission) + `"`)
	return len(re.FindAllIndex(raw, -1))
}

// TestPartition cuts real links (network namespaces joined by veths; the cut
// drops the site's carrier) and checks that nothing is lost: the scenarios of
// the failure-tolerance issue, each a subtest, on one tree.
func TestPartition(t *testing.T) {
	tr, sites := newPartitionTree(t)
	ctx := t.Context()
	us := tr.edges["us"]
	for _, c := range []*localcluster.Cluster{tr.root, tr.edges["eu"]} {
		if _, err := c.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "partition"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	toUS := edgev1alpha1.Placement{Clusters: []string{"us"}}
	create := func(m *edgev1alpha1.Mission) {
		t.Helper()
		if err := tr.rootCli.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	// Missions in place before the cut: one kept, one updated and one
	// deleted while us is cut.
	for _, m := range []*edgev1alpha1.Mission{cm(t, "kept", "1", toUS), cm(t, "updated", "1", toUS), cm(t, "deleted", "1", toUS)} {
		create(m)
	}
	waitFor(t, 60*time.Second, "the missions Ready at the root", func(ctx context.Context) (bool, error) {
		for _, n := range []string{"kept", "updated", "deleted"} {
			if ok, err := missionReady(ctx, tr.rootCli, n); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
	})
	keptApplies := applies(t, tr.agents["us"], "kept")
	if keptApplies == 0 {
		t.Fatalf("no apply of mission kept in us's debug log %s: the count of applies below would prove nothing", tr.agents["us"].LogPath())
	}

	t.Run("a-leaf-cut-beyond-grace", func(t *testing.T) {
		cutAt := time.Now()
		if err := sites["us"].Cut(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "us Offline at the root, its mission unknown since the cut", func(ctx context.Context) (bool, error) {
			ec, err := tr.ec(t, ctx, "us")
			if err != nil || ec.Status.State != edgev1alpha1.StateOffline || ec.Status.LastHeartbeatTime == nil {
				return false, err
			}
			m := &edgev1alpha1.Mission{}
			if err := tr.rootCli.Get(ctx, client.ObjectKey{Namespace: "partition", Name: "kept"}, m); err != nil {
				return false, err
			}
			return len(m.Status.Clusters) == 1 && m.Status.Clusters[0].Phase == edgev1alpha1.PhaseUnknown &&
				strings.Contains(m.Status.Clusters[0].Message, "unknown since"), nil
		})
		t.Logf("us Offline at the root %s after the cut", time.Since(cutAt).Round(100*time.Millisecond))

		// An edit at the site is still corrected by its agent, uplink or not.
		if err := us.Client().CoreV1().ConfigMaps("partition").Delete(ctx, "kept", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the deleted ConfigMap recreated at us while cut", func(ctx context.Context) (bool, error) {
			_, ok, err := configMap(ctx, us, "kept")
			return ok, err
		})
		// The cut outlasts the orphan grace: the workloads stay, because an
		// unreachable parent says nothing about what it wants.
		waitFor(t, 2*orphanGrace+30*time.Second, "the cut to outlast the orphan grace with every workload in place", func(ctx context.Context) (bool, error) {
			for _, n := range []string{"kept", "updated", "deleted"} {
				if _, ok, err := configMap(ctx, us, n); err != nil || !ok {
					return false, errors.Join(fmt.Errorf("ConfigMap %s gone at us during the cut", n), err)
				}
			}
			return time.Since(cutAt) > orphanGrace+5*time.Second, nil
		})
	})

	t.Run("b-missions-changed-while-cut", func(t *testing.T) {
		create(cm(t, "created", "1", toUS))
		m := &edgev1alpha1.Mission{}
		if err := tr.rootCli.Get(ctx, client.ObjectKey{Namespace: "partition", Name: "updated"}, m); err != nil {
			t.Fatal(err)
		}
		m.Spec.Resources = cm(t, "updated", "2", toUS).Spec.Resources
		if err := tr.rootCli.Update(ctx, m); err != nil {
			t.Fatal(err)
		}
		if err := tr.rootCli.Delete(ctx, cm(t, "deleted", "1", toUS)); err != nil {
			t.Fatal(err)
		}
		// The deletion waits for us: the mission stays, saying so.
		waitFor(t, 30*time.Second, "the deleted mission held for us", func(ctx context.Context) (bool, error) {
			got := &edgev1alpha1.Mission{}
			if err := tr.rootCli.Get(ctx, client.ObjectKey{Namespace: "partition", Name: "deleted"}, got); err != nil {
				return false, fmt.Errorf("the mission was released before us confirmed its deletion: %w", err)
			}
			c := meta.FindStatusCondition(got.Status.Conditions, edgev1alpha1.MissionDeleting)
			return got.DeletionTimestamp != nil && c != nil && strings.Contains(c.Message, "us"), nil
		})
		updatedApplies := applies(t, tr.agents["us"], "updated")

		// c. A local event while cut: a node fails. (A local mission needs
		// the hub role: scenario d adds one at a middle cluster while cut.)
		if err := us.StopNodeGroup("b"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "us's node b NotReady (seen at us)", func(ctx context.Context) (bool, error) {
			nodes, err := us.Client().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			ready := 0
			for _, n := range nodes.Items {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
			return ready == 1, nil
		})

		restoredAt := time.Now()
		if err := sites["us"].Restore(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 90*time.Second, "us converged to the root's desired state", func(ctx context.Context) (bool, error) {
			for name, want := range map[string]string{"kept": "1", "updated": "2", "created": "1"} {
				if v, ok, err := configMap(ctx, us, name); err != nil || !ok || v != want {
					return false, err
				}
			}
			if _, ok, err := configMap(ctx, us, "deleted"); ok || err != nil {
				return false, err
			}
			err := tr.rootCli.Get(ctx, client.ObjectKey{Namespace: "partition", Name: "deleted"}, &edgev1alpha1.Mission{})
			if !apierrors.IsNotFound(err) {
				return false, client.IgnoreNotFound(err)
			}
			for _, n := range []string{"kept", "updated", "created"} {
				if ok, err := missionReady(ctx, tr.rootCli, n); !ok || err != nil {
					return false, err
				}
			}
			return true, nil
		})
		t.Logf("us converged %s after its uplink was restored", time.Since(restoredAt).Round(100*time.Millisecond))
		// Nothing applied twice: the update once, the unchanged mission not
		// at all (its drift repair during the cut aside).
		if n := applies(t, tr.agents["us"], "updated") - updatedApplies; n != 1 {
			t.Errorf("the updated mission was applied %d times after the restore, want 1", n)
		}
		if n := applies(t, tr.agents["us"], "kept") - keptApplies; n > 1 {
			t.Errorf("the unchanged mission was applied %d times across the cut, want at most 1 (the drift repair)", n)
		}

		// The cut and the return are Events on the cluster, shown by describe.
		waitFor(t, 30*time.Second, "the link's Events in 'fornaxctl describe cluster us'", func(context.Context) (bool, error) {
			out := fornaxctl(t, "describe", "cluster", "us", "--kubeconfig", tr.root.Kubeconfig)
			_, events, _ := strings.Cut(out, "\nEvents:\n")
			return regexp.MustCompile(`Warning\s+LinkDown`).MatchString(events) && regexp.MustCompile(`Normal\s+Connected`).MatchString(events) &&
				regexp.MustCompile(`Path:\s+root/us \(depth 1, parent root\)`).MatchString(out), nil
		})

		t.Run("c-local-events-reported-after-restore", func(t *testing.T) {
			waitFor(t, 60*time.Second, "the failed node visible at the root", func(ctx context.Context) (bool, error) {
				ec, err := tr.ec(t, ctx, "us")
				if err != nil || ec.Status.Nodes == nil {
					return false, err
				}
				return ec.Status.Nodes.Total == 2 && ec.Status.Nodes.Ready == 1, nil
			})
		})
	})

	t.Run("d-middle-cut", func(t *testing.T) {
		eu, berlin := tr.edges["eu"], tr.edges["berlin"]
		if err := sites["eu"].Cut(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "eu and berlin not Ready at the root", func(ctx context.Context) (bool, error) {
			for _, n := range []string{"eu", "berlin"} {
				ec, err := tr.ec(t, ctx, n)
				if err != nil || condStatus(ec, edgev1alpha1.EdgeClusterReady) == metav1.ConditionTrue {
					return false, err
				}
			}
			return true, nil
		})
		// berlin stays connected to eu, and eu's operators deploy to it.
		euCli := edgeClient(t, eu)
		waitFor(t, 30*time.Second, "berlin Ready at eu while eu's uplink is cut", func(ctx context.Context) (bool, error) {
			ec := &edgev1alpha1.EdgeCluster{}
			if err := euCli.Get(ctx, client.ObjectKey{Name: "berlin"}, ec); err != nil {
				return false, err
			}
			return condStatus(ec, edgev1alpha1.EdgeClusterReady) == metav1.ConditionTrue, nil
		})
		if err := euCli.Create(ctx, cm(t, "from-eu", "1", edgev1alpha1.Placement{Clusters: []string{"berlin"}})); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "eu's mission Ready at eu and its ConfigMap at berlin", func(ctx context.Context) (bool, error) {
			if _, ok, err := configMap(ctx, berlin, "from-eu"); !ok || err != nil {
				return false, err
			}
			return missionReady(ctx, euCli, "from-eu")
		})
		if err := sites["eu"].Restore(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 90*time.Second, "eu and berlin Ready at the root, eu's mission shown there", func(ctx context.Context) (bool, error) {
			for _, n := range []string{"eu", "berlin"} {
				ec, err := tr.ec(t, ctx, n)
				if err != nil || condStatus(ec, edgev1alpha1.EdgeClusterReady) != metav1.ConditionTrue {
					return false, err
				}
			}
			ec, err := tr.ec(t, ctx, "berlin")
			if err != nil {
				return false, err
			}
			for _, l := range ec.Status.LocalMissions {
				if l.Name == "from-eu" && l.Origin == "eu" {
					return true, nil
				}
			}
			return false, nil
		})
	})

	t.Run("g-node-fails-pods-move", func(t *testing.T) {
		if err := us.StartNodeGroup(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		// Ready is not enough: the node controller lifts the not-ready and
		// unreachable taints a moment later, and a pod scheduled meanwhile
		// lands on node a (the spread below is soft, so that the pods can
		// move to a when b fails).
		waitFor(t, 60*time.Second, "node b schedulable again", func(ctx context.Context) (bool, error) {
			n, err := us.Client().CoreV1().Nodes().Get(ctx, "b-0", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, taint := range n.Spec.Taints {
				if taint.Effect == corev1.TaintEffectNoSchedule || taint.Effect == corev1.TaintEffectNoExecute {
					return false, nil
				}
			}
			return !n.Spec.Unschedulable, nil
		})
		web := &edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Namespace: "partition", Name: "web"},
			Spec: edgev1alpha1.MissionSpec{Placement: toUS, Resources: []runtime.RawExtension{raw(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}
      containers: [{name: web, image: nginx}]`)}}}
		create(web)
		waitFor(t, 60*time.Second, "web Ready at the root with a pod on each node", func(ctx context.Context) (bool, error) {
			pods, err := us.Client().CoreV1().Pods("partition").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return false, err
			}
			nodes := map[string]bool{}
			for _, p := range pods.Items {
				nodes[p.Spec.NodeName] = true
			}
			ok, err := missionReady(ctx, tr.rootCli, "web")
			return ok && len(nodes) == 2, err
		})
		failedAt := time.Now()
		if err := us.StopNodeGroup("b"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "web not Ready at the root", func(ctx context.Context) (bool, error) {
			ok, err := missionReady(ctx, tr.rootCli, "web")
			return !ok, err
		})
		t.Logf("web not Ready at the root %s after node b failed", time.Since(failedAt).Round(100*time.Millisecond))
		waitFor(t, 90*time.Second, "web Ready again at the root, both pods on node a", func(ctx context.Context) (bool, error) {
			pods, err := us.Client().CoreV1().Pods("partition").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return false, err
			}
			running := 0
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == "a-0" {
					running++
				}
			}
			ok, err := missionReady(ctx, tr.rootCli, "web")
			return ok && running == 2, err
		})
		t.Logf("web Ready again at the root %s after node b failed", time.Since(failedAt).Round(100*time.Millisecond))
	})

	t.Run("e-kill-9-during-propagation", func(t *testing.T) {
		toBoth := edgev1alpha1.Placement{Clusters: []string{"us", "berlin"}}
		everywhere := func(name, value string) func(ctx context.Context) (bool, error) {
			return func(ctx context.Context) (bool, error) {
				for _, c := range []*localcluster.Cluster{us, tr.edges["berlin"]} {
					if v, ok, err := configMap(ctx, c, name); !ok || v != value || err != nil {
						return false, err
					}
				}
				return missionReady(ctx, tr.rootCli, name)
			}
		}
		// The root's hub dies right after a mission is created, before it
		// can have delivered it.
		create(cm(t, "e1", "1", toBoth))
		tr.crash(t, "root")
		waitFor(t, 3*time.Minute, "e1 everywhere after the root's hub crashed", everywhere("e1", "1"))

		// The middle dies as soon as it stores a mission for its subtree.
		create(cm(t, "e2", "1", toBoth))
		euCli := edgeClient(t, tr.edges["eu"])
		waitFor(t, 30*time.Second, "e2 stored at eu", func(ctx context.Context) (bool, error) {
			err := euCli.Get(ctx, client.ObjectKey{Namespace: "partition", Name: "e2"}, &edgev1alpha1.Mission{})
			return err == nil, client.IgnoreNotFound(err)
		})
		tr.crash(t, "eu")
		waitFor(t, 3*time.Minute, "e2 everywhere after eu crashed", everywhere("e2", "1"))

		// The leaf dies as soon as it stores an update; a deletion is made
		// while the root's hub is down.
		m := &edgev1alpha1.Mission{}
		if err := tr.rootCli.Get(ctx, client.ObjectKey{Namespace: "partition", Name: "e1"}, m); err != nil {
			t.Fatal(err)
		}
		m.Spec.Resources = cm(t, "e1", "2", toBoth).Spec.Resources
		if err := tr.rootCli.Update(ctx, m); err != nil {
			t.Fatal(err)
		}
		usCli := edgeClient(t, us)
		waitFor(t, 30*time.Second, "the update stored at us", func(ctx context.Context) (bool, error) {
			got := &edgev1alpha1.Mission{}
			err := usCli.Get(ctx, client.ObjectKey{Namespace: "partition", Name: "e1"}, got)
			return err == nil && strings.Contains(string(got.Spec.Resources[0].Raw), `"2"`), client.IgnoreNotFound(err)
		})
		tr.crash(t, "us")
		tr.hub.Kill()
		if err := tr.rootCli.Delete(ctx, cm(t, "e2", "1", toBoth)); err != nil {
			t.Fatal(err)
		}
		tr.startHub(t, tr.hubArgs...)
		waitFor(t, 3*time.Minute, "e1 updated everywhere and e2 gone everywhere", func(ctx context.Context) (bool, error) {
			if ok, err := everywhere("e1", "2")(ctx); !ok || err != nil {
				return false, err
			}
			for _, c := range []*localcluster.Cluster{us, tr.edges["berlin"]} {
				if _, ok, err := configMap(ctx, c, "e2"); ok || err != nil {
					return false, err
				}
			}
			err := tr.rootCli.Get(ctx, client.ObjectKey{Namespace: "partition", Name: "e2"}, &edgev1alpha1.Mission{})
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		// Nothing else was deleted.
		for name, want := range map[string]string{"kept": "1", "updated": "2", "created": "1"} {
			if v, ok, err := configMap(ctx, us, name); err != nil || !ok || v != want {
				t.Errorf("ConfigMap %s at us after the crashes: %q, present %t, %v", name, v, ok, err)
			}
		}
		if _, ok, err := configMap(ctx, tr.edges["berlin"], "from-eu"); err != nil || !ok {
			t.Errorf("eu's own mission's ConfigMap at berlin after the crashes: present %t, %v", ok, err)
		}
	})

	t.Run("h-flapping-uplink", func(t *testing.T) {
		agentMetrics := func() (goroutines, heap float64) {
			f := siteMetrics(t, sites["us"])
			return sample(f, "go_goroutines", nil), sample(f, "go_memstats_heap_inuse_bytes", nil)
		}
		hubGoroutines := func() float64 {
			return sample(siteMetrics(t, sites["root"]), "go_goroutines", nil)
		}
		// The daemons' metrics, read with the Prometheus text parser.
		usMetrics := siteMetrics(t, sites["us"])
		rootMetrics := siteMetrics(t, sites["root"])
		for _, m := range []struct {
			fams  map[string]*dto.MetricFamily
			name  string
			label map[string]string
			min   float64
		}{
			{rootMetrics, "fornax_hub_connected_children", nil, 2},
			{rootMetrics, "fornax_link_wire_bytes_total", map[string]string{"role": "parent", "direction": "received"}, 1},
			{rootMetrics, "fornax_link_frames_total", map[string]string{"role": "parent", "type": "objects"}, 1},
			{usMetrics, "fornax_link_frame_bytes_total", map[string]string{"role": "child", "direction": "sent", "type": "report"}, 1},
			{usMetrics, "fornax_agent_applies_total", map[string]string{"result": "ok"}, 1},
			{usMetrics, "fornax_agent_apply_duration_seconds", nil, 0},
			{usMetrics, "fornax_agent_drift_corrections_total", nil, 0}, // the agent restarted in e: counted from then
		} {
			if m.fams[m.name] == nil {
				t.Errorf("metric %s missing", m.name)
			} else if got := sample(m.fams, m.name, m.label); got < m.min {
				t.Errorf("metric %s%v = %v, want at least %v", m.name, m.label, got, m.min)
			}
		}
		g0, h0 := agentMetrics()
		hg0 := hubGoroutines()
		kept := applies(t, tr.agents["us"], "kept")
		began := time.Now()
		for time.Since(began) < time.Minute {
			if err := sites["us"].Cut(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second) // the flapping's shape: 3 s down, 3 s up
			if err := sites["us"].Restore(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second) // up for 3 s, then down again
		}
		waitFor(t, 90*time.Second, "us Ready at the root with its missions after the flapping", func(ctx context.Context) (bool, error) {
			ec, err := tr.ec(t, ctx, "us")
			if err != nil || condStatus(ec, edgev1alpha1.EdgeClusterReady) != metav1.ConditionTrue {
				return false, err
			}
			for _, n := range []string{"kept", "updated", "created", "web", "e1"} {
				if ok, err := missionReady(ctx, tr.rootCli, n); !ok || err != nil {
					return false, err
				}
			}
			return true, nil
		})
		var g1, h1, hg1 float64
		// Goroutines of closed streams end shortly after; give them a moment.
		waitFor(t, 30*time.Second, "the agent's and the hub's goroutines back to their level before the flapping", func(context.Context) (bool, error) {
			g1, h1 = agentMetrics()
			hg1 = hubGoroutines()
			return g1 <= g0+10 && hg1 <= hg0+10, nil
		})
		t.Logf("flapping for 1 min (3 s down, 3 s up): agent goroutines %.0f → %.0f, heap in use %.1f → %.1f MiB; hub goroutines %.0f → %.0f",
			g0, g1, h0/(1<<20), h1/(1<<20), hg0, hg1)
		if n := applies(t, tr.agents["us"], "kept") - kept; n != 0 {
			t.Errorf("an unchanged mission was applied %d times during the flapping, want 0", n)
		}
	})

	t.Run("f-root-loses-its-data", func(t *testing.T) {
		// A backup of the root's datastore, then two missions it will not hold.
		backup := filepath.Join(t.TempDir(), "root-backup")
		if err := tr.root.SaveData(ctx, backup); err != nil {
			t.Fatal(err)
		}
		create(cm(t, "f-adopted", "1", toUS))
		create(cm(t, "f-dropped", "1", toUS))
		waitFor(t, 60*time.Second, "the two missions Ready", func(ctx context.Context) (bool, error) {
			a, err := missionReady(ctx, tr.rootCli, "f-adopted")
			if err != nil {
				return false, err
			}
			d, err := missionReady(ctx, tr.rootCli, "f-dropped")
			return a && d, err
		})
		// The root restored from the backup, as an operator restores etcd:
		// controllers stopped, the data restored, controllers started.
		tr.hub.Kill()
		if err := tr.root.RestoreData(ctx, backup); err != nil {
			t.Fatal(err)
		}
		restoredAt := time.Now()
		tr.startHub(t, tr.hubArgs...)
		waitFor(t, 60*time.Second, "both missions reported orphaned at the root, their workloads still at us", func(ctx context.Context) (bool, error) {
			ec, err := tr.ec(t, ctx, "us")
			if err != nil {
				return false, err
			}
			orphaned := map[string]bool{}
			for _, o := range ec.Status.OrphanedMissions {
				if o.DeleteAfter.Sub(o.Since.Time) != orphanGrace {
					return false, fmt.Errorf("orphan %s: since %s, delete after %s: not the grace of %s", o.Name, o.Since, o.DeleteAfter, orphanGrace)
				}
				orphaned[o.Name] = true
			}
			for _, n := range []string{"f-adopted", "f-dropped"} {
				if _, ok, err := configMap(ctx, us, n); err != nil || !ok {
					return false, errors.Join(fmt.Errorf("ConfigMap %s gone at us before its grace period", n), err)
				}
			}
			return orphaned["f-adopted"] && orphaned["f-dropped"] && len(orphaned) == 2, nil
		})
		t.Logf("orphans reported at the root %s after the restore", time.Since(restoredAt).Round(100*time.Millisecond))
		// One is created again at the root: adopted. The other goes after
		// the grace period.
		create(cm(t, "f-adopted", "1", toUS))
		waitFor(t, orphanGrace+60*time.Second, "f-adopted adopted, f-dropped deleted after the grace", func(ctx context.Context) (bool, error) {
			if _, ok, err := configMap(ctx, us, "f-dropped"); ok || err != nil {
				return false, err
			}
			if _, ok, err := configMap(ctx, us, "f-adopted"); err != nil || !ok {
				return false, errors.Join(errors.New("the adopted mission's ConfigMap is gone"), err)
			}
			ec, err := tr.ec(t, ctx, "us")
			if err != nil || len(ec.Status.OrphanedMissions) != 0 {
				return false, err
			}
			return missionReady(ctx, tr.rootCli, "f-adopted")
		})
		if since := time.Since(restoredAt); since < orphanGrace {
			t.Errorf("f-dropped deleted %s after the restore, before the grace of %s", since, orphanGrace)
		}
		for name, want := range map[string]string{"kept": "1", "updated": "2", "created": "1"} {
			if v, ok, err := configMap(ctx, us, name); err != nil || !ok || v != want {
				t.Errorf("ConfigMap %s at us after the restore: %q, present %t, %v", name, v, ok, err)
			}
		}
	})
}

// siteMetrics reads the /metrics of the fornaxd in a site's namespace
// (--metrics-bind-address :9090 there), from inside the namespace.
func siteMetrics(t testing.TB, s *netlab.Site) map[string]*dto.MetricFamily {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: s.DialContext}}
	return scrapeVia(t, c, "http://"+net.JoinHostPort(s.IP.String(), "9090")+"/metrics")
}

// siteAddr is where a middle cluster's hub listens in the partition tests:
// its LAN address if it has a LAN, else its uplink address.
func siteAddr(s *netlab.Site) string {
	ip := s.IP
	if s.LANIP != nil {
		ip = s.LANIP
	}
	return net.JoinHostPort(ip.String(), "7443")
}
