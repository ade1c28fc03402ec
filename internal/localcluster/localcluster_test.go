package localcluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/fornax-edge/fornax/internal/localcluster"
)

func TestMain(m *testing.M) {
	// Nothing this test binary started may outlive it.
	os.Exit(localcluster.RunTests(m, nil, nil))
}

func start(t *testing.T, opts localcluster.Options) *localcluster.Cluster {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), opts.Name)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c, err := localcluster.Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping %s: %v", c.Name, err)
		}
	})
	return c
}

func deployment(name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}},
					// Pods may go to any simulated node.
					Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}},
				},
			},
		},
	}
}

// runningPodsByNode counts the Running pods of app per node.
func runningPodsByNode(ctx context.Context, cs kubernetes.Interface, app string) (map[string]int, error) {
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			out[p.Spec.NodeName]++
		}
	}
	return out, nil
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, cond)
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func TestDeploymentReachesRunning(t *testing.T) {
	t.Parallel()
	c := start(t, localcluster.Options{
		Name:       "deploy",
		NodeGroups: []localcluster.NodeGroup{{Name: "a", Count: 1}, {Name: "b", Count: 1}},
	})
	cs := c.Client()
	ctx := t.Context()
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, deployment("web", 4), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var last map[string]int
	waitFor(t, 90*time.Second, "4 Running pods", func(ctx context.Context) (bool, error) {
		byNode, err := runningPodsByNode(ctx, cs, "web")
		last = byNode
		total := 0
		for _, n := range byNode {
			total += n
		}
		return total == 4, err
	})
	d, err := cs.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pods per node: %v; deployment available %d/%d", last, d.Status.AvailableReplicas, *d.Spec.Replicas)
	for _, p := range mustPods(t, cs, "web") {
		if p.Status.PodIP == "" {
			t.Errorf("pod %s is Running without an IP", p.Name)
		}
	}
}

func mustPods(t *testing.T, cs kubernetes.Interface, app string) []corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods("default").List(t.Context(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	return pods.Items
}

// TestNodeFailureReschedules stops the heartbeat of one of two nodes and
// checks that Kubernetes itself evicts its pods and the Deployment is back to
// four available pods, all on the healthy node.
func TestNodeFailureReschedules(t *testing.T) {
	t.Parallel()
	c := start(t, localcluster.Options{
		Name:                   "nodefail",
		NodeGroups:             []localcluster.NodeGroup{{Name: "healthy", Count: 1}, {Name: "failing", Count: 1}},
		NodeMonitorGracePeriod: 15 * time.Second,
		PodEvictionTimeout:     2 * time.Second,
	})
	cs := c.Client()
	ctx := t.Context()
	d := deployment("svc", 4)
	// Spread the pods so the failing node surely holds some.
	d.Spec.Template.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
		MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector: d.Spec.Selector,
	}}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, "4 Running pods on both nodes", func(ctx context.Context) (bool, error) {
		byNode, err := runningPodsByNode(ctx, cs, "svc")
		return byNode["healthy-0"]+byNode["failing-0"] == 4 && byNode["failing-0"] > 0, err
	})

	began := time.Now()
	if err := c.StopNodeGroup("failing"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "node failing-0 to be marked not Ready", func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, "failing-0", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status != corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
	t.Logf("node marked unhealthy after %s", time.Since(began).Round(time.Second))
	var byNode map[string]int
	waitFor(t, 2*time.Minute, "4 available pods on the healthy node", func(ctx context.Context) (bool, error) {
		var err error
		if byNode, err = runningPodsByNode(ctx, cs, "svc"); err != nil {
			return false, err
		}
		dep, err := cs.AppsV1().Deployments("default").Get(ctx, "svc", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return byNode["healthy-0"] == 4 && dep.Status.AvailableReplicas == 4, nil
	})
	t.Logf("rescheduled after %s: running pods per node %v", time.Since(began).Round(time.Second), byNode)

	// The failed node comes back when its kwok restarts.
	if err := c.StartNodeGroup(ctx, "failing"); err != nil {
		t.Fatal(err)
	}
}

// TestClustersStartConcurrently starts three clusters, one K3s-style, side by
// side; each serves requests; stopping them leaves no process behind.
func TestClustersStartConcurrently(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := []localcluster.Options{
		{Name: "one", Dir: filepath.Join(dir, "one")},
		{Name: "two", Dir: filepath.Join(dir, "two")},
		{Name: "three", Dir: filepath.Join(dir, "three"), Flavor: localcluster.FlavorK3s},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	clusters, err := localcluster.StartAll(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("3 clusters ready in %s", time.Since(began).Round(time.Millisecond))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			for _, c := range clusters {
				_ = c.Stop()
			}
		}
	})
	for _, c := range clusters {
		cs := c.Client()
		v, err := cs.Discovery().ServerVersion()
		if err != nil {
			t.Fatalf("%s: server version: %v", c.Name, err)
		}
		if v.GitVersion != wantVersion {
			t.Errorf("%s reports %s, want %s", c.Name, v.GitVersion, wantVersion)
		}
		// A write and a read back through each cluster's datastore.
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "hello"}, Data: map[string]string{"cluster": c.Name}}
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: create: %v", c.Name, err)
		}
		got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "hello", metav1.GetOptions{})
		if err != nil || got.Data["cluster"] != c.Name {
			t.Fatalf("%s: read back %v, %v", c.Name, got.Data, err)
		}
		if _, ok := c.Components()[map[localcluster.Flavor]string{localcluster.FlavorK8s: "etcd", localcluster.FlavorK3s: "kine"}[c.Flavor]]; !ok {
			t.Errorf("%s (%s) does not run the expected datastore: %v", c.Name, c.Flavor, c.Components())
		}
	}
	for _, c := range clusters {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping %s: %v", c.Name, err)
		}
	}
	stopped = true
	left, err := localcluster.FindProcesses(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("%d processes left after Stop: %v", len(left), left)
	}
	for _, c := range clusters {
		if _, err := c.Client().Discovery().ServerVersion(); err == nil {
			t.Errorf("%s still answers after Stop", c.Name)
		}
	}
}

// wantVersion is the pinned Kubernetes release, read from the tools module
// that builds it, so that this test checks the version ldflags.
var wantVersion = func() string {
	b, err := os.ReadFile("../../hack/tools/kubernetes/go.mod")
	if err != nil {
		panic(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "require" && f[1] == "k8s.io/kubernetes" {
			return f[2]
		}
	}
	panic("no k8s.io/kubernetes requirement in hack/tools/kubernetes/go.mod")
}()

// TestStaleDirectoryIsCleaned starts a cluster over the directory of one whose
// owner "crashed" (never stopped it): the old processes are killed and the
// new cluster starts clean.
func TestStaleDirectoryIsCleaned(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "stale")
	old := start(t, localcluster.Options{Name: "stale", Dir: dir})
	oldPIDs := old.Components()
	if _, err := old.Client().CoreV1().ConfigMaps("default").Create(t.Context(),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "old"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fresh := start(t, localcluster.Options{Name: "stale", Dir: dir})
	for name, pid := range oldPIDs {
		if err := syscall.Kill(pid, 0); err == nil && !isZombie(pid) {
			t.Errorf("%s of the stale cluster (pid %d) still runs", name, pid)
		}
	}
	if _, err := fresh.Client().CoreV1().ConfigMaps("default").Get(t.Context(), "old", metav1.GetOptions{}); err == nil {
		t.Errorf("the fresh cluster still has the stale cluster's data")
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

func TestMissingBinariesSayWhatToDo(t *testing.T) {
	t.Parallel()
	_, err := localcluster.Start(t.Context(), localcluster.Options{Name: "x", Dir: t.TempDir(), BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("Start with no binaries: got %v, want an error telling to run `make tools`", err)
	}
	_, err = localcluster.Start(t.Context(), localcluster.Options{Name: "Not_A_Label", Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "DNS label") {
		t.Fatalf("Start with a bad name: got %v, want an error naming the rule", err)
	}
}

// TestRestoreDataLosesLaterWrites saves a cluster's state, writes more, and
// restores the copy: the later write is gone, the earlier one is back, for
// both datastores.
func TestRestoreDataLosesLaterWrites(t *testing.T) {
	t.Parallel()
	for _, flavor := range []localcluster.Flavor{localcluster.FlavorK8s, localcluster.FlavorK3s} {
		t.Run(string(flavor), func(t *testing.T) {
			t.Parallel()
			c := start(t, localcluster.Options{Name: "restore-" + string(flavor), Flavor: flavor})
			ctx := t.Context()
			put := func(name string) {
				t.Helper()
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
				if _, err := c.Client().CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			exists := func(name string) bool {
				t.Helper()
				_, err := c.Client().CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					t.Fatal(err)
				}
				return err == nil
			}
			put("before")
			backup := filepath.Join(t.TempDir(), "backup")
			if err := c.SaveData(ctx, backup); err != nil {
				t.Fatal(err)
			}
			put("after")
			if err := c.RestoreData(ctx, backup); err != nil {
				t.Fatal(err)
			}
			if !exists("before") || exists("after") {
				t.Errorf("after the restore: before %t (want true), after %t (want false)", exists("before"), exists("after"))
			}
		})
	}
}
