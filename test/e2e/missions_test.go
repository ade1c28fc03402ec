package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
	"sigs.k8s.io/yaml"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

func raw(t testing.TB, y string) runtime.RawExtension {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return runtime.RawExtension{Raw: j}
}

func webResources(t *testing.T, image string, withConfigMap bool) []runtime.RawExtension {
	out := []runtime.RawExtension{raw(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: `+image+`}]
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists}]`),
		raw(t, "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80}]}")}
	if withConfigMap {
		out = append(out, raw(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: edge}"))
	}
	return out
}

// TestMissions delivers a mission selected by label to exactly the matching
// edge clusters, follows an update, a pruned resource, a cluster relabelled
// into the selector and the mission's deletion, as a user sees it from the
// root.
func TestMissions(t *testing.T) {
	tr := newTree(t, nil,
		localcluster.Options{Name: "root"},
		localcluster.Options{Name: "eu1", NodeGroups: []localcluster.NodeGroup{{Name: "n", Count: 1}}},
		localcluster.Options{Name: "us1", NodeGroups: []localcluster.NodeGroup{{Name: "n", Count: 1}}},
	)
	ctx := t.Context()
	tr.joinEdge(t, "eu1", "topology.fornax.io/region=eu")
	tr.joinEdge(t, "us1", "topology.fornax.io/region=us")
	if _, err := tr.root.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m := &edgev1alpha1.Mission{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: edgev1alpha1.MissionSpec{
			Resources: webResources(t, "registry.example/web:1", true),
			Placement: edgev1alpha1.Placement{ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"topology.fornax.io/region": "eu"}}},
		},
	}
	began := time.Now()
	if err := tr.rootCli.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	deployment := func(cluster string) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			d, err := tr.edges[cluster].Client().AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
			return err == nil && d.Status.ReadyReplicas == 2, nil
		}
	}
	waitFor(t, time.Minute, "the deployment Ready in eu1", deployment("eu1"))
	t.Logf("mission created → 2 pods ready in eu1 in %s", time.Since(began).Round(time.Millisecond))
	missionReady := func(targeted int32, generation int64) func(ctx context.Context) (bool, error) {
		return func(ctx context.Context) (bool, error) {
			got := &edgev1alpha1.Mission{}
			if err := tr.rootCli.Get(ctx, client.ObjectKeyFromObject(m), got); err != nil {
				return false, err
			}
			c := meta.FindStatusCondition(got.Status.Conditions, edgev1alpha1.MissionReady)
			ok := got.Status.ObservedGeneration == generation && got.Status.Summary.Targeted == targeted &&
				got.Status.Summary.Ready == targeted && c != nil && c.Status == metav1.ConditionTrue
			if !ok {
				y, _ := yaml.Marshal(got.Status)
				return false, fmt.Errorf("mission status:\n%s", y)
			}
			return true, nil
		}
	}
	waitFor(t, 30*time.Second, "the mission Ready at the root for eu1", missionReady(1, 1))
	t.Logf("mission created → Ready at the root in %s", time.Since(began).Round(time.Millisecond))
	if _, err := tr.edges["us1"].Client().AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("us1 got the mission although it does not match (%v)", err)
	}
	t.Logf("kubectl get missions -n shop:\n%s", kubectl(t, tr.root, "get", "missions", "-n", "shop"))

	update := func(mutate func(*edgev1alpha1.Mission)) {
		t.Helper()
		got := &edgev1alpha1.Mission{}
		if err := tr.rootCli.Get(ctx, client.ObjectKeyFromObject(m), got); err != nil {
			t.Fatal(err)
		}
		mutate(got)
		if err := tr.rootCli.Update(ctx, got); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("update the image", func(t *testing.T) {
		update(func(m *edgev1alpha1.Mission) { m.Spec.Resources = webResources(t, "registry.example/web:2", true) })
		waitFor(t, time.Minute, "the new image rolled out in eu1", func(ctx context.Context) (bool, error) {
			d, err := tr.edges["eu1"].Client().AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
			return err == nil && d.Spec.Template.Spec.Containers[0].Image == "registry.example/web:2" &&
				d.Status.UpdatedReplicas == 2 && d.Status.ReadyReplicas == 2, nil
		})
		waitFor(t, 30*time.Second, "the mission Ready at generation 2", missionReady(1, 2))
	})

	t.Run("remove the ConfigMap", func(t *testing.T) {
		update(func(m *edgev1alpha1.Mission) { m.Spec.Resources = webResources(t, "registry.example/web:2", false) })
		waitFor(t, 30*time.Second, "the ConfigMap pruned in eu1", func(ctx context.Context) (bool, error) {
			_, err := tr.edges["eu1"].Client().CoreV1().ConfigMaps("shop").Get(ctx, "settings", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
	})

	t.Run("drift at the edge is reverted and counted", func(t *testing.T) {
		dc := tr.edges["eu1"].Client().AppsV1().Deployments("shop")
		d, err := dc.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.Spec.Template.Spec.Containers[0].Image = "registry.example/web:hacked" // what kubectl edit does
		if _, err := dc.Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		waitFor(t, 90*time.Second, "the edit reverted and counted at the root", func(ctx context.Context) (bool, error) {
			d, err := dc.Get(ctx, "web", metav1.GetOptions{})
			if err != nil || d.Spec.Template.Spec.Containers[0].Image != "registry.example/web:2" {
				return false, err
			}
			got := &edgev1alpha1.Mission{}
			if err := tr.rootCli.Get(ctx, client.ObjectKeyFromObject(m), got); err != nil {
				return false, err
			}
			return len(got.Status.Clusters) == 1 && got.Status.Clusters[0].DriftCorrections >= 1, nil
		})
		t.Logf("drift reverted and counted at the root %s after the edit", time.Since(began).Round(100*time.Millisecond))

		// An applied object deleted at the edge comes back.
		sc := tr.edges["eu1"].Client().CoreV1().Services("shop")
		if err := sc.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		began = time.Now()
		waitFor(t, 60*time.Second, "the deleted Service recreated and counted", func(ctx context.Context) (bool, error) {
			_, err := sc.Get(ctx, "web", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			got := &edgev1alpha1.Mission{}
			if err := tr.rootCli.Get(ctx, client.ObjectKeyFromObject(m), got); err != nil {
				return false, err
			}
			return len(got.Status.Clusters) == 1 && got.Status.Clusters[0].DriftCorrections >= 2, nil
		})
		t.Logf("deleted Service recreated %s after the deletion", time.Since(began).Round(100*time.Millisecond))
	})

	t.Run("relabel a cluster into the selector", func(t *testing.T) {
		ec, err := tr.ec(t, ctx, "us1")
		if err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(ec.DeepCopy())
		ec.Labels["topology.fornax.io/region"] = "eu"
		if err := tr.rootCli.Patch(ctx, ec, patch); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the deployment Ready in us1", deployment("us1"))
		waitFor(t, 30*time.Second, "the mission Ready in both clusters", missionReady(2, 3))
	})

	t.Run("relabel a cluster out of the selector", func(t *testing.T) {
		ec, err := tr.ec(t, ctx, "us1")
		if err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(ec.DeepCopy())
		ec.Labels["topology.fornax.io/region"] = "us"
		if err := tr.rootCli.Patch(ctx, ec, patch); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the deployment removed from us1", func(ctx context.Context) (bool, error) {
			_, err := tr.edges["us1"].Client().AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		waitFor(t, 30*time.Second, "the mission Ready in eu1 only", missionReady(1, 3))
	})

	t.Run("fornaxctl mission create and status", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "cm.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: greeting}\ndata: {hello: world}\n---\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out := fornaxctl(t, "mission", "create", "greeting", "-n", "shop", "-f", dir, "--clusters", "us1", "--kubeconfig", tr.root.Kubeconfig)
		if !strings.Contains(out, "created with 1 resources") {
			t.Errorf("mission create said %q", out)
		}
		// As a user waits: progress on stderr, the table once Ready.
		out, progress, err := fornaxctlErr(t, "mission", "status", "greeting", "-n", "shop", "--wait", "60s", "--kubeconfig", tr.root.Kubeconfig)
		if err != nil || !regexp.MustCompile(`(?m)^us1\s+Ready\s+1\s`).MatchString(out) || !strings.Contains(progress, "generation 1: ready in 1 of 1 clusters") {
			t.Fatalf("fornaxctl mission status --wait: %v\n%s\nprogress:\n%s", err, out, progress)
		}
		if _, err := tr.edges["us1"].Client().CoreV1().ConfigMaps("shop").Get(t.Context(), "greeting", metav1.GetOptions{}); err != nil {
			t.Errorf("Ready at the root, but the ConfigMap is not in us1: %v", err)
		}
		// A wait that cannot end: a mission placed on a cluster that does not
		// exist fails with where it stands.
		fornaxctl(t, "mission", "create", "nowhere", "-n", "shop", "-f", dir, "--clusters", "mars", "--kubeconfig", tr.root.Kubeconfig)
		if _, stderr, err := fornaxctlErr(t, "mission", "status", "nowhere", "-n", "shop", "--wait", "3s", "--kubeconfig", tr.root.Kubeconfig); err == nil ||
			!strings.Contains(stderr, "not Ready after 3s") {
			t.Errorf("fornaxctl mission status --wait on a mission that cannot be Ready: %v\n%s", err, stderr)
		}
		nowhere := &edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "nowhere"}}
		if err := tr.rootCli.Delete(t.Context(), nowhere); err != nil {
			t.Error(err)
		}
		out = fornaxctl(t, "get", "missions", "-A", "--kubeconfig", tr.root.Kubeconfig)
		if !regexp.MustCompile(`(?m)^shop\s+greeting\s+1\s+1\s+0\s+0\s+Ready\s`).MatchString(out) {
			t.Errorf("fornaxctl get missions -A:\n%s", out)
		}
		var st edgev1alpha1.Mission
		if err := yaml.Unmarshal([]byte(fornaxctl(t, "mission", "status", "greeting", "-n", "shop", "-o", "yaml", "--kubeconfig", tr.root.Kubeconfig)), &st); err != nil ||
			st.Kind != "Mission" || st.Status.Summary.Ready != 1 || len(st.Status.Clusters) != 1 || st.Status.Clusters[0].Cluster != "us1" {
			t.Errorf("fornaxctl mission status -o yaml: %+v (%v)", st, err)
		}
		var list edgev1alpha1.MissionList
		if err := json.Unmarshal([]byte(fornaxctl(t, "get", "missions", "-n", "shop", "-o", "json", "--kubeconfig", tr.root.Kubeconfig)), &list); err != nil || len(list.Items) < 2 {
			t.Errorf("fornaxctl get missions -o json: %d items (%v)", len(list.Items), err)
		}
	})

	getMission := func(ctx context.Context, name string) (*edgev1alpha1.Mission, error) {
		got := &edgev1alpha1.Mission{}
		err := tr.rootCli.Get(ctx, client.ObjectKey{Namespace: "shop", Name: name}, got)
		return got, err
	}

	t.Run("a Job mission completes", func(t *testing.T) {
		job := &edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Name: "migrate", Namespace: "shop"},
			Spec: edgev1alpha1.MissionSpec{Placement: edgev1alpha1.Placement{Clusters: []string{"eu1"}},
				Resources: []runtime.RawExtension{raw(t, `apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: registry.example/migrate:1}]
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists}]`)}}}
		if err := tr.rootCli.Create(ctx, job); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the Job Complete in eu1, seen at the root", func(ctx context.Context) (bool, error) {
			got, err := getMission(ctx, "migrate")
			if err != nil || len(got.Status.Clusters) != 1 || len(got.Status.Clusters[0].Resources) != 1 {
				return false, err
			}
			return got.Status.Clusters[0].Phase == edgev1alpha1.PhaseReady && got.Status.Clusters[0].Resources[0].Status == "Complete", nil
		})
	})

	t.Run("bad input fails only that mission", func(t *testing.T) {
		bad := &edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "shop"},
			Spec: edgev1alpha1.MissionSpec{Placement: edgev1alpha1.Placement{Clusters: []string{"eu1", "us1"}},
				Resources: []runtime.RawExtension{
					raw(t, "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}"),
					raw(t, "apiVersion: v1\nkind: Service\nmetadata: {name: broken}\nspec: {ports: [{port: 99999}]}"),
				}}}
		if err := tr.rootCli.Create(ctx, bad); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the mission Failed in both clusters with the reasons", func(ctx context.Context) (bool, error) {
			got, err := getMission(ctx, "bad")
			if err != nil || got.Status.Summary.Failed != 2 {
				return false, err
			}
			for _, c := range got.Status.Clusters {
				if !strings.Contains(c.Message, "no kind Widget") || !strings.Contains(c.Message, "in cluster "+c.Cluster) {
					return false, fmt.Errorf("%s: %q", c.Cluster, c.Message)
				}
				if len(c.Resources) != 2 || !strings.Contains(c.Resources[1].Message, "refused Service shop/broken") {
					return false, fmt.Errorf("%s resources: %+v", c.Cluster, c.Resources)
				}
			}
			return true, nil
		})
		// The other missions are not affected.
		if got, err := getMission(ctx, "greeting"); err != nil || got.Status.Summary.Ready != 1 {
			t.Errorf("the greeting mission after a bad one: %+v (%v)", got.Status.Summary, err)
		}
	})

	t.Run("orphan keeps the resources", func(t *testing.T) {
		keep := &edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Name: "keep", Namespace: "shop"},
			Spec: edgev1alpha1.MissionSpec{DeletionPolicy: edgev1alpha1.DeletionPolicyOrphan,
				Placement: edgev1alpha1.Placement{Clusters: []string{"eu1"}},
				Resources: []runtime.RawExtension{raw(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept}\ndata: {a: b}")}}}
		if err := tr.rootCli.Create(ctx, keep); err != nil {
			t.Fatal(err)
		}
		eu1 := edgeClient(t, tr.edges["eu1"])
		waitFor(t, 30*time.Second, "the ConfigMap in eu1", func(ctx context.Context) (bool, error) {
			_, err := tr.edges["eu1"].Client().CoreV1().ConfigMaps("shop").Get(ctx, "kept", metav1.GetOptions{})
			return err == nil, nil
		})
		if err := tr.rootCli.Delete(ctx, keep); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the mission gone from eu1", func(ctx context.Context) (bool, error) {
			err := eu1.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "keep"}, &edgev1alpha1.Mission{})
			return apierrors.IsNotFound(err), nil
		})
		if _, err := tr.edges["eu1"].Client().CoreV1().ConfigMaps("shop").Get(ctx, "kept", metav1.GetOptions{}); err != nil {
			t.Errorf("an Orphan mission's ConfigMap was deleted: %v", err)
		}
	})

	t.Run("delete the mission", func(t *testing.T) {
		if err := tr.rootCli.Delete(ctx, m); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the deployment removed from eu1", func(ctx context.Context) (bool, error) {
			_, err := tr.edges["eu1"].Client().AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
	})
}
