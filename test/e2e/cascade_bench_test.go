package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

// BenchmarkCascadeDelivery runs a chain root → d1 → d2 → d3 (d1 and d2 middle
// clusters; API servers without nodes: a ConfigMap mission needs none) and
// measures, for each report interval (1 s, 10 s, the same at every level):
//   - delivery: 60 missions, one every 150 ms, each naming one cluster in
//     turn (d1, d2, d3); time from the Create call at the root to the
//     ConfigMap in that cluster (a watch there), p50/p99 per depth;
//   - status from depth 3: the ConfigMap deleted at d3 (the agent recreates
//     it and counts the drift) → the root's Mission shows the new count; 10
//     times;
//   - the floor: 30 ConfigMaps applied with plain `kubectl apply` straight to
//     each cluster in turn, measured the same way (invocation → watch);
//   - bytes on each link (wire bytes counted by each agent: TLS, HTTP/2 and
//     keepalives included): an idle window of 20 s gives the idle rate and
//     the bytes per heartbeat; the delivery phase, less the idle rate, over the
//     missions that crossed the link (60 at d1, 40 at d2, 20 at d3: a middle
//     relays its subtree's), gives bytes per mission down and up.
//
// Run with -benchtime=1x.
func BenchmarkCascadeDelivery(b *testing.B) {
	for _, interval := range []string{"1s", "10s"} {
		b.Run("interval-"+interval, func(b *testing.B) {
			chain := []string{"d1", "d2", "d3"}
			tr := newTree(b, nil, localcluster.Options{Name: "root"}, localcluster.Options{Name: "d1"},
				localcluster.Options{Name: "d2"}, localcluster.Options{Name: "d3"})
			addrs, metrics := map[string]string{}, map[string]string{}
			parent := "root"
			for i, name := range chain {
				m := freeAddr(b)
				metrics[name] = "http://" + m + "/metrics"
				tr.joinBelow(b, name, parent, "", i < len(chain)-1, addrs, "--report-interval", interval, "--metrics-bind-address", m)
				parent = name
			}
			ctx := context.Background()
			for _, c := range append([]*localcluster.Cluster{tr.root}, tr.edges["d1"], tr.edges["d2"], tr.edges["d3"]) {
				if _, err := c.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			waitFor(b, 2*time.Minute, "d3 known at the root", func(ctx context.Context) (bool, error) {
				ec, err := tr.ec(b, ctx, "d3")
				return err == nil && ec.Status.Depth == 3, nil
			})
			for b.Loop() {
				benchCascade(b, tr, chain, metrics)
			}
		})
	}
}

func benchCascade(b *testing.B, tr *tree, chain []string, metrics map[string]string) {
	const missions, spacing, idleWindow = 60, 150 * time.Millisecond, 20 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Idle: the links' own traffic (heartbeats, keepalives).
	readAll := func() map[string]linkCounters {
		out := map[string]linkCounters{}
		for _, name := range chain {
			out[name] = readLink(b, metrics[name])
		}
		return out
	}
	idle0 := readAll()
	time.Sleep(idleWindow) // the measurement window: nothing happens on purpose
	idle := map[string]linkCounters{}
	for name, c := range readAll() {
		idle[name] = c.minus(idle0[name])
	}
	phase0, phaseBegan := readAll(), time.Now()
	var mu sync.Mutex
	seen := map[string]time.Time{}
	for _, name := range chain {
		w, err := tr.edges[name].Client().CoreV1().ConfigMaps("bench").Watch(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				if cm, ok := ev.Object.(*corev1.ConfigMap); ok && ev.Type == watch.Added {
					mu.Lock()
					if _, ok := seen[name+"/"+cm.Name]; !ok {
						seen[name+"/"+cm.Name] = time.Now()
					}
					mu.Unlock()
				}
			}
		}()
	}
	run := time.Now().UnixNano()
	created := map[string]time.Time{}
	target := map[string]string{}
	for i := range missions {
		name := fmt.Sprintf("m-%d-%02d", run%100000, i)
		to := chain[i%len(chain)]
		m := &edgev1alpha1.Mission{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: name},
			Spec: edgev1alpha1.MissionSpec{Placement: edgev1alpha1.Placement{Clusters: []string{to}},
				Resources: []runtime.RawExtension{raw(b, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "+name+"}\ndata: {a: b}")}}}
		created[name], target[name] = time.Now(), to
		if err := tr.rootCli.Create(ctx, m); err != nil {
			b.Fatal(err)
		}
		time.Sleep(spacing) // the load's shape: one mission every 150 ms
	}
	waitFor(b, 2*time.Minute, "every mission delivered", func(context.Context) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == missions, nil
	})
	waitFor(b, 2*time.Minute, "every mission Ready at the root", func(ctx context.Context) (bool, error) {
		var l edgev1alpha1.MissionList
		if err := tr.rootCli.List(ctx, &l, client.InNamespace("bench")); err != nil {
			return false, err
		}
		ready := 0
		for _, m := range l.Items {
			if _, ok := target[m.Name]; ok && m.Status.Summary.Ready == 1 {
				ready++
			}
		}
		return ready == missions, nil
	})
	phaseLen := time.Since(phaseBegan)
	phase := map[string]linkCounters{}
	for name, c := range readAll() {
		phase[name] = c.minus(phase0[name])
	}
	perDepth := map[string][]time.Duration{}
	mu.Lock()
	for name, to := range target {
		perDepth[to] = append(perDepth[to], seen[to+"/"+name].Sub(created[name]))
	}
	mu.Unlock()

	// The floor: the same manifests applied with plain kubectl straight to
	// each cluster (no Fornax), measured the same way (the watch there).
	kubectl, err := localcluster.FindBinDir()
	if err != nil {
		b.Fatal(err)
	}
	kubectl = filepath.Join(kubectl, localcluster.BinKubectl)
	applied := map[string]time.Time{}
	applyTarget := map[string]string{}
	for i := range missions / 2 {
		name := fmt.Sprintf("k-%d-%02d", run%100000, i)
		to := chain[i%len(chain)]
		cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", tr.edges[to].Kubeconfig, "apply", "-f", "-")
		cmd.Stdin = strings.NewReader("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: " + name + ", namespace: bench}\ndata: {a: b}\n")
		applied[name], applyTarget[name] = time.Now(), to
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("kubectl apply: %v\n%s", err, out)
		}
		time.Sleep(spacing) // the same load shape as the missions
	}
	waitFor(b, time.Minute, "every kubectl apply seen", func(context.Context) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == missions+missions/2, nil
	})
	floor := map[string][]time.Duration{}
	mu.Lock()
	for name, to := range applyTarget {
		floor[to] = append(floor[to], seen[to+"/"+name].Sub(applied[name]))
	}
	mu.Unlock()

	// Status from depth 3: a drift at d3 reaches the root's Mission.
	var probe string
	for name, to := range target {
		if to == "d3" {
			probe = name
			break
		}
	}
	key := client.ObjectKey{Namespace: "bench", Name: probe}
	waitFor(b, time.Minute, probe+" Ready at the root", func(ctx context.Context) (bool, error) {
		got := &edgev1alpha1.Mission{}
		return tr.rootCli.Get(ctx, key, got) == nil && got.Status.Summary.Ready == 1, nil
	})
	var status []time.Duration
	for i := range 10 {
		if err := tr.edges["d3"].Client().CoreV1().ConfigMaps("bench").Delete(ctx, probe, metav1.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		waitFor(b, time.Minute, "the drift counted at the root", func(ctx context.Context) (bool, error) {
			got := &edgev1alpha1.Mission{}
			if err := tr.rootCli.Get(ctx, key, got); err != nil || len(got.Status.Clusters) != 1 {
				return false, err
			}
			return got.Status.Clusters[0].DriftCorrections >= int64(i+1), nil
		})
		status = append(status, time.Since(began))
	}

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for i, name := range chain {
		b.ReportMetric(ms(percentile(perDepth[name], 0.5)), fmt.Sprintf("delivery-depth%d-p50-ms", i+1))
		b.ReportMetric(ms(percentile(perDepth[name], 0.99)), fmt.Sprintf("delivery-depth%d-p99-ms", i+1))
	}
	for i, name := range chain {
		b.ReportMetric(ms(percentile(floor[name], 0.5)), fmt.Sprintf("kubectl-apply-depth%d-p50-ms", i+1))
		b.ReportMetric(ms(percentile(floor[name], 0.99)), fmt.Sprintf("kubectl-apply-depth%d-p99-ms", i+1))
	}
	for i, name := range chain {
		crossing := float64(missions - i*missions/len(chain)) // d1 carries all, d3 its own
		rate := func(v float64) float64 { return v / idleWindow.Seconds() }
		down := (phase[name].down - rate(idle[name].down)*phaseLen.Seconds()) / crossing
		up := (phase[name].up - rate(idle[name].up)*phaseLen.Seconds()) / crossing
		b.ReportMetric(down, fmt.Sprintf("link%d-down-bytes/mission", i+1))
		b.ReportMetric(up, fmt.Sprintf("link%d-up-bytes/mission", i+1))
		b.ReportMetric(rate(idle[name].down+idle[name].up)*8/1000, fmt.Sprintf("link%d-idle-kbit/s", i+1))
		if idle[name].heartbeats > 0 {
			b.ReportMetric(idle[name].hbBytes/idle[name].heartbeats, fmt.Sprintf("link%d-bytes/heartbeat", i+1))
		}
		b.Logf("link %s: %.0f missions crossed; per mission %.0f B down, %.0f B up (object frames %.0f B each); idle %.0f B/s down, %.0f B/s up; %.0f heartbeats of %.0f B",
			name, crossing, down, up, phase[name].objectBytes/max(1, phase[name].objects), rate(idle[name].down), rate(idle[name].up),
			idle[name].heartbeats, idle[name].hbBytes/max(1, idle[name].heartbeats))
	}
	b.ReportMetric(ms(percentile(status, 0.5)), "status-depth3-p50-ms")
	b.ReportMetric(ms(percentile(status, 0.99)), "status-depth3-p99-ms")
	b.Logf("floor, kubectl apply straight to the cluster, p50/p99: d1 %s/%s, d2 %s/%s, d3 %s/%s",
		percentile(floor["d1"], 0.5), percentile(floor["d1"], 0.99), percentile(floor["d2"], 0.5), percentile(floor["d2"], 0.99),
		percentile(floor["d3"], 0.5), percentile(floor["d3"], 0.99))
	b.Logf("delivery p50/p99: depth 1 %s/%s, depth 2 %s/%s, depth 3 %s/%s; status depth 3 → root p50 %s p99 %s",
		percentile(perDepth["d1"], 0.5), percentile(perDepth["d1"], 0.99), percentile(perDepth["d2"], 0.5), percentile(perDepth["d2"], 0.99),
		percentile(perDepth["d3"], 0.5), percentile(perDepth["d3"], 0.99), percentile(status, 0.5), percentile(status, 0.99))
}
