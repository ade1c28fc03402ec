package apply_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"

	"github.com/fornax-edge/fornax/internal/apply"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

var cluster *localcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(localcluster.RunTests(m, &localcluster.Options{Name: "edge", NodeGroups: []localcluster.NodeGroup{{Name: "n", Count: 1}}},
		func(c *localcluster.Cluster) error { cluster = c; return nil }))
}

func objs(t *testing.T, docs ...string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, d := range docs {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(d), &u.Object); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

func deployment(image string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: ` + image + `}]
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists}]`
}

const (
	configMap = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: edge}"
	service   = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{port: 80}]}"
)

func newApplier(t *testing.T) *apply.Applier {
	t.Helper()
	a, err := apply.New("edge", cluster.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// applyUntil applies until cond holds (readiness takes a rollout), as the
// agent does on each report.
func applyUntil(t *testing.T, a *apply.Applier, m apply.Mission, inv []apply.Ref, what string, cond func(apply.Result) bool) apply.Result {
	t.Helper()
	var res apply.Result
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		res = a.Apply(ctx, m, inv)
		inv = res.Inventory
		return cond(res), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v; last result %+v", what, err, res)
	}
	return res
}

func TestApplyPruneAndReadiness(t *testing.T) {
	a := newApplier(t)
	ctx := t.Context()
	m := apply.Mission{Namespace: "shop", Name: "web", Generation: 1, SystemNamespace: "fornax-system",
		Resources: objs(t, deployment("registry.example/web:1"), configMap, service)}
	res := applyUntil(t, a, m, nil, "the mission Ready", apply.Result.Ready)
	if len(res.Inventory) != 3 {
		t.Fatalf("inventory %v, want 3 objects", res.Inventory)
	}
	d, err := cluster.Client().AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.ReadyReplicas != 2 || d.Labels[apply.LabelMission] != apply.MissionHash("shop", "web") {
		t.Errorf("deployment %d ready, labels %v", d.Status.ReadyReplicas, d.Labels)
	}

	// A new image rolls out; readiness follows the rollout.
	m.Generation, m.Resources = 2, objs(t, deployment("registry.example/web:2"), configMap, service)
	res = applyUntil(t, a, m, res.Inventory, "the new image Ready", apply.Result.Ready)
	d, _ = cluster.Client().AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/web:2" || d.Annotations[apply.AnnotationGeneration] != "2" {
		t.Errorf("image %s, generation annotation %s", img, d.Annotations[apply.AnnotationGeneration])
	}

	// Drift: someone edits the Deployment; the next apply reverts it.
	d.Spec.Template.Spec.Containers[0].Image = "registry.example/web:hacked"
	if _, err := cluster.Client().AppsV1().Deployments("shop").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res = a.Apply(ctx, m, res.Inventory)
	d, _ = cluster.Client().AppsV1().Deployments("shop").Get(ctx, "web", metav1.GetOptions{})
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.example/web:2" {
		t.Errorf("drift not reverted: image %s", img)
	}
	drifted := 0
	for _, r := range res.Resources {
		if r.Drifted {
			drifted++
			if r.Ref.Kind != "Deployment" {
				t.Errorf("%s reported drifted", r.Ref)
			}
		}
	}
	if drifted != 1 {
		t.Errorf("%d resources reported drifted, want the Deployment", drifted)
	}
	if again := a.Apply(ctx, m, res.Inventory); again.Resources[0].Drifted || again.Resources[1].Drifted || again.Resources[2].Drifted {
		t.Errorf("an apply with nothing changed reported drift: %+v", again.Resources)
	}

	// The ConfigMap leaves the mission: pruned.
	m.Generation, m.Resources = 3, objs(t, deployment("registry.example/web:2"), service)
	res = a.Apply(ctx, m, res.Inventory)
	if len(res.Pruned) != 1 || res.Pruned[0].Kind != "ConfigMap" || len(res.Inventory) != 2 {
		t.Errorf("pruned %v, inventory %v", res.Pruned, res.Inventory)
	}
	if _, err := cluster.Client().CoreV1().ConfigMaps("shop").Get(ctx, "settings", metav1.GetOptions{}); err == nil {
		t.Error("the ConfigMap is still there")
	}

	// The mission is deleted: everything goes.
	if errs := a.Delete(ctx, m, res.Inventory); len(errs) > 0 {
		t.Fatal(errs)
	}
	for _, st := range a.Status(ctx, res.Inventory) {
		if st.Status != status.NotFoundStatus {
			// Deployments go with background propagation; the object itself is gone at once.
			t.Errorf("%s still there after Delete: %s", st.Ref, st.Status)
		}
	}
}

func TestJobCompletes(t *testing.T) {
	a := newApplier(t)
	job := `apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: registry.example/migrate:1}]
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists}]`
	m := apply.Mission{Namespace: "jobs", Name: "migrate", Generation: 1, Resources: objs(t, job)}
	res := a.Apply(t.Context(), m, nil)
	if res.Failed() || res.Resources[0].Complete {
		t.Fatalf("apply: %+v (a Job cannot be complete at once)", res)
	}
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		st := a.Status(ctx, res.Inventory)
		return len(st) == 1 && st[0].Complete, nil
	})
	if err != nil {
		t.Fatalf("the Job did not complete: %v; %+v", err, a.Status(t.Context(), res.Inventory))
	}
	j, err := cluster.Client().BatchV1().Jobs("jobs").Get(t.Context(), "migrate", metav1.GetOptions{})
	if err != nil || j.Status.Succeeded != 1 {
		t.Errorf("job succeeded %d (%v)", j.Status.Succeeded, err)
	}
}

func TestBadInput(t *testing.T) {
	a := newApplier(t)
	ctx := t.Context()
	// An object that exists but was not created by Fornax.
	pre := objs(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: precious, namespace: bad}\ndata: {owner: ops}")[0]
	if _, err := cluster.Client().CoreV1().Namespaces().Create(ctx, nsObj("bad"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client().CoreV1().ConfigMaps("bad").Create(ctx, toConfigMap(t, pre), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m := apply.Mission{Namespace: "bad", Name: "bad", Generation: 1, SystemNamespace: "fornax-system", Resources: objs(t,
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: precious}\ndata: {owner: fornax}",
		"apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}",
		"apiVersion: v1\nkind: Service\nmetadata: {name: broken}\nspec: {ports: [{port: 99999}]}",
		"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: tenant-role}",
		configMap,
	)}
	res := a.Apply(ctx, m, nil)
	want := []string{
		"was not created by Fornax: refusing to take it over",
		"no kind Widget in group \"example.com\" version v1 in cluster edge",
		"cluster edge refused Service bad/broken",
		"only missions in namespace fornax-system may carry cluster-scoped resources",
		"",
	}
	for i, w := range want {
		got := res.Resources[i].Err
		if (w == "") != (got == "") || !strings.Contains(got, w) {
			t.Errorf("resource %d: error %q, want %q", i, got, w)
		}
	}
	if len(res.Inventory) != 1 || res.Inventory[0].Name != "settings" {
		t.Errorf("inventory %v: only the good ConfigMap", res.Inventory)
	}
	cm, _ := cluster.Client().CoreV1().ConfigMaps("bad").Get(ctx, "precious", metav1.GetOptions{})
	if cm.Data["owner"] != "ops" {
		t.Errorf("the pre-existing ConfigMap was changed: %v", cm.Data)
	}
}

func nsObj(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func toConfigMap(t *testing.T, u *unstructured.Unstructured) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, cm); err != nil {
		t.Fatal(err)
	}
	return cm
}
