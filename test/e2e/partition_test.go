package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"regexp"
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
	"github.com/fornax-edge/fornax/internal/netlab"
)

// orphanGrace is the agents' --orphan-grace in the partition tests: short,
// so that a cut can outlast it.
const orphanGrace = 15 * time.Second

// partitionArgs are every agent's extra flags in the partition tests.
var partitionArgs = []string{"--orphan-grace", orphanGrace.String(), "--reconnect-max-delay", "4s"}

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
	tr := newTree(t, nil,
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
				if _, ok, err := configMap(ctx, us, n); !ok || err != nil {
					return false, fmt.Errorf("ConfigMap %s gone at us during the cut (%v)", n, err)
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
