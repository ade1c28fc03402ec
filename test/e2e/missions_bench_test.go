package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/apply"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

// BenchmarkMissionDelivery creates 100 missions (a ConfigMap each, then a
// ConfigMap and a Deployment of one pod each), one every 150 ms, for three
// edge clusters at depth 1
// joined to a real root (report interval 1 s), and measures from each
// Create call at the root:
//   - delivery: until the ConfigMap (Deployment) exists in the edge cluster
//     (a watch there), over the 300 mission × cluster pairs;
//   - availability at the edge: until the Deployment is available there
//     (Kubernetes' own controllers, kwok pods; a ConfigMap is at once);
//   - Ready at the root: until the root's Mission shows 3 clusters Ready (a
//     watch at the root), over the 100 missions, and the part of it after the
//     last edge's Deployment became available (the status lag Fornax adds);
//
// then, with everything Ready, the API writes per second at the root and at
// one edge over a 30 s window in which nothing changes. Run with -benchtime=1x.
func BenchmarkMissionDelivery(b *testing.B) {
	edges := []string{"e1", "e2", "e3"}
	opts := []localcluster.Options{{Name: "root"}}
	for _, e := range edges {
		opts = append(opts, localcluster.Options{Name: e, NodeGroups: []localcluster.NodeGroup{{Name: "n", Count: 1}}})
	}
	tr := newTree(b, nil, opts...)
	for _, e := range edges {
		tr.joinEdge(b, e, "")
	}
	// With ConfigMaps only, nothing but Fornax works on a mission: delivery
	// and status as Fornax alone makes them. With a Deployment, 300 pods
	// start on this 2-core machine at the same time.
	b.Run("configmap", func(b *testing.B) { benchDelivery(b, tr, edges, false) })
	b.Run("deployment", func(b *testing.B) { benchDelivery(b, tr, edges, true) })
}

func benchDelivery(b *testing.B, tr *tree, edges []string, pods bool) {
	const missions, spacing = 100, 150 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for b.Loop() {
		ns := fmt.Sprintf("bench-%d", time.Now().UnixNano())
		created := make([]time.Time, missions)
		var mu sync.Mutex
		delivered := map[string]time.Time{} // cluster/mission → first seen
		edgeReady := map[string]time.Time{} // cluster/mission → Deployment available there
		readyAt := map[string]time.Time{}   // mission → all three Ready at the root
		watchErr := make(chan error, len(edges)+1)

		gvrWatched := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
		if pods {
			gvrWatched = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
		}
		for _, e := range edges {
			dyn := dynamic.NewForConfigOrDie(tr.edges[e].RESTConfig())
			w, err := dyn.Resource(gvrWatched).Namespace(ns).Watch(ctx, metav1.ListOptions{LabelSelector: apply.LabelMission})
			if err != nil {
				b.Fatal(err)
			}
			go func() {
				defer w.Stop()
				for ev := range w.ResultChan() {
					u, ok := ev.Object.(*unstructured.Unstructured)
					if !ok || ev.Type == watch.Deleted {
						continue
					}
					key := e + "/" + u.GetName()
					available, _, _ := unstructured.NestedInt64(u.Object, "status", "availableReplicas")
					mu.Lock()
					if _, ok := delivered[key]; !ok {
						delivered[key] = time.Now()
					}
					if _, ok := edgeReady[key]; !ok && (available == 1 || !pods) {
						edgeReady[key] = time.Now()
					}
					mu.Unlock()
				}
				if ctx.Err() == nil {
					watchErr <- fmt.Errorf("the watch of %s ended early", e)
				}
			}()
		}
		rootDyn := dynamic.NewForConfigOrDie(tr.root.RESTConfig())
		gvrMission := edgev1alpha1.GroupVersion.WithResource("missions")
		rw, err := rootDyn.Resource(gvrMission).Namespace(ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			defer rw.Stop()
			for ev := range rw.ResultChan() {
				u, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				ready, _, _ := unstructured.NestedInt64(u.Object, "status", "summary", "ready")
				if ready == int64(len(edges)) {
					mu.Lock()
					if _, ok := readyAt[u.GetName()]; !ok {
						readyAt[u.GetName()] = time.Now()
					}
					mu.Unlock()
				}
			}
			if ctx.Err() == nil {
				watchErr <- fmt.Errorf("the watch of the root's missions ended early")
			}
		}()

		if _, err := tr.root.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		for i := range missions {
			m := benchMission(b, ns, fmt.Sprintf("app-%03d", i), pods)
			created[i] = time.Now()
			if err := tr.rootCli.Create(ctx, m); err != nil {
				b.Fatal(err)
			}
			time.Sleep(spacing) // the load's shape: one mission every 150 ms
		}
		waitFor(b, 3*time.Minute, "every mission Ready in every cluster at the root", func(context.Context) (bool, error) {
			select {
			case err := <-watchErr:
				return false, err
			default:
			}
			mu.Lock()
			defer mu.Unlock()
			return len(readyAt) == missions && len(delivered) == missions*len(edges), nil
		})

		// delivery: create → exists at the edge; ready: create → Ready at
		// the root; lag: the last edge's Deployment available → the root
		// shows all three Ready (what Fornax adds to Kubernetes' own rollout).
		var deliver, ready, edge, lag []time.Duration
		mu.Lock()
		for i := range missions {
			name := fmt.Sprintf("app-%03d", i)
			var last time.Time
			for _, e := range edges {
				deliver = append(deliver, delivered[e+"/"+name].Sub(created[i]))
				edge = append(edge, edgeReady[e+"/"+name].Sub(created[i]))
				if t := edgeReady[e+"/"+name]; t.After(last) {
					last = t
				}
			}
			ready = append(ready, readyAt[name].Sub(created[i]))
			lag = append(lag, readyAt[name].Sub(last))
		}
		mu.Unlock()

		// Steady state: nothing changes; count the writes.
		// Let the last reports settle: no write at the root for a whole second.
		last, quietSince := apiWrites(b, tr.root), time.Now()
		waitFor(b, time.Minute, "the root's API writes to settle", func(context.Context) (bool, error) {
			if w := apiWrites(b, tr.root); w != last {
				last, quietSince = w, time.Now()
			}
			return time.Since(quietSince) >= time.Second, nil
		})
		root0, edge0 := apiWrites(b, tr.root), apiWrites(b, tr.edges["e1"])
		const window = 30 * time.Second
		time.Sleep(window) // the measurement window
		rootW := (apiWrites(b, tr.root) - root0) / window.Seconds()
		edgeW := (apiWrites(b, tr.edges["e1"]) - edge0) / window.Seconds()

		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(percentile(deliver, 0.5)), "delivery-p50-ms")
		b.ReportMetric(ms(percentile(deliver, 0.99)), "delivery-p99-ms")
		b.ReportMetric(ms(percentile(ready, 0.5)), "ready-at-root-p50-ms")
		b.ReportMetric(ms(percentile(ready, 0.99)), "ready-at-root-p99-ms")
		b.ReportMetric(rootW, "root-writes/s-steady")
		b.ReportMetric(edgeW, "edge-writes/s-steady")
		b.ReportMetric(ms(percentile(edge, 0.5)), "edge-available-p50-ms")
		b.ReportMetric(ms(percentile(lag, 0.5)), "status-lag-p50-ms")
		b.ReportMetric(ms(percentile(lag, 0.99)), "status-lag-p99-ms")
		b.Logf("%d missions × %d clusters, one every %s: delivery p50 %s p99 %s; available at the edge p50 %s; "+
			"Ready at the root p50 %s p99 %s, of which after the last edge was available p50 %s p99 %s; steady writes/s root %.2f edge %.2f",
			missions, len(edges), spacing, percentile(deliver, 0.5), percentile(deliver, 0.99), percentile(edge, 0.5),
			percentile(ready, 0.5), percentile(ready, 0.99), percentile(lag, 0.5), percentile(lag, 0.99), rootW, edgeW)
	}
}

func benchMission(b *testing.B, ns, name string, pods bool) *edgev1alpha1.Mission {
	m := &edgev1alpha1.Mission{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: edgev1alpha1.MissionSpec{Resources: []runtime.RawExtension{
			raw(b, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "+name+"}\ndata: {mode: edge}"),
		}},
	}
	if pods {
		m.Spec.Resources = append(m.Spec.Resources, raw(b, `apiVersion: apps/v1
kind: Deployment
metadata: {name: `+name+`}
spec:
  replicas: 1
  selector: {matchLabels: {app: `+name+`}}
  template:
    metadata: {labels: {app: `+name+`}}
    spec:
      containers: [{name: app, image: registry.example/app:1}]
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists}]`))
	}
	return m
}
