package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/localcluster"
	"github.com/fornax-edge/fornax/internal/netlab"
)

// BenchmarkResync measures what a partition costs, on a real cut (network
// namespaces; root only): a root and one edge holding 1,000 ConfigMap
// missions, keepalives 10 s / 5 s (the default time is 15 s), report interval 1 s, heartbeat
// 60 s (so none falls in a measurement).
//
//   - detect: the edge's uplink cut → the root shows it Offline;
//   - resync with 0, 1 and 100 of the missions changed at the root during
//     the cut: bytes the edge's uplink carried from the restore until every
//     change is applied and Ready at the root (link messages, and wire bytes
//     with the TLS handshake), and the time that took;
//   - 100 new missions over the uplink shaped to 256 kbit/s: time until the
//     last ConfigMap is at the edge.
//
// Run with -benchtime=1x.
func BenchmarkResync(b *testing.B) {
	if err := netlab.Check(); err != nil {
		b.Skipf("skipping: %v", err)
	}
	w, err := netlab.NewForProcess()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Close() })
	sites := map[string]*netlab.Site{}
	for _, n := range []string{"root", "edge"} {
		if sites[n], err = w.AddSite(n); err != nil {
			b.Fatal(err)
		}
	}
	in := func(o localcluster.Options) localcluster.Options {
		s := sites[o.Name]
		o.Host, o.NetNS, o.Dial = s.IP.String(), s.NetNSPath(), s.DialContext
		return o
	}
	tr := newTree(b, []string{"--log-level", "warn"}, in(localcluster.Options{Name: "root"}), in(localcluster.Options{Name: "edge"}))
	tr.sites = sites
	tr.joinBelow(b, "edge", "root", "", false, map[string]string{}, "--heartbeat-interval", "60s", "--keepalive-time", "10s",
		"--keepalive-timeout", "5s", "--reconnect-max-delay", "2s", "--metrics-bind-address", ":9090", "--log-level", "warn")
	edge := tr.edges["edge"]
	ctx := context.Background()
	for _, c := range []*localcluster.Cluster{tr.root, edge} {
		if _, err := c.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	toEdge := edgev1alpha1.Placement{Clusters: []string{"edge"}}
	mission := func(name, value string) *edgev1alpha1.Mission {
		m := cm(b, name, value, toEdge)
		m.Namespace = "bench"
		return m
	}
	const total = 1000
	began := time.Now()
	parallel(b, total, func(i int) error { return tr.rootCli.Create(ctx, mission(fmt.Sprintf("m-%04d", i), "1")) })
	waitForValues(b, edge, "bench", total, nil, 10*time.Minute)
	allReady(b, tr, total, 10*time.Minute)
	b.Logf("%d missions created, applied and Ready at the root in %s", total, time.Since(began).Round(time.Second))

	counters := func() (frames, wire float64) {
		f := siteMetrics(b, sites["edge"])
		return sample(f, "fornax_link_frame_bytes_total", map[string]string{"role": "child"}),
			sample(f, "fornax_link_wire_bytes_total", map[string]string{"role": "child"})
	}

	for b.Loop() {
		for round, changed := range []int{0, 1, 100} {
			cutAt := time.Now()
			if err := sites["edge"].Cut(); err != nil {
				b.Fatal(err)
			}
			waitFor(b, 2*time.Minute, "the edge Offline at the root", func(ctx context.Context) (bool, error) {
				ec, err := tr.ec(b, ctx, "edge")
				return err == nil && ec.Status.State == edgev1alpha1.StateOffline, nil
			})
			detect := time.Since(cutAt)
			value := fmt.Sprint(round + 2)
			parallel(b, changed, func(i int) error {
				m := &edgev1alpha1.Mission{}
				if err := tr.rootCli.Get(ctx, client.ObjectKey{Namespace: "bench", Name: fmt.Sprintf("m-%04d", i)}, m); err != nil {
					return err
				}
				m.Spec.Resources = mission(m.Name, value).Spec.Resources
				return tr.rootCli.Update(ctx, m)
			})
			f0, w0 := counters()
			restoredAt := time.Now()
			if err := sites["edge"].Restore(); err != nil {
				b.Fatal(err)
			}
			waitFor(b, 2*time.Minute, "the edge Connected at the root", func(ctx context.Context) (bool, error) {
				ec, err := tr.ec(b, ctx, "edge")
				return err == nil && condStatus(ec, edgev1alpha1.EdgeClusterConnected) == metav1.ConditionTrue, nil
			})
			want := map[string]string{}
			for i := range changed {
				want[fmt.Sprintf("m-%04d", i)] = value
			}
			waitForValues(b, edge, "bench", total, want, 5*time.Minute)
			allReady(b, tr, total, 5*time.Minute)
			converged := time.Since(restoredAt)
			f1, w1 := counters()
			b.ReportMetric(detect.Seconds(), fmt.Sprintf("detect-%d-s", changed))
			b.ReportMetric(f1-f0, fmt.Sprintf("resync-%d-changed-message-bytes", changed))
			b.ReportMetric(w1-w0, fmt.Sprintf("resync-%d-changed-wire-bytes", changed))
			b.ReportMetric(converged.Seconds(), fmt.Sprintf("resync-%d-changed-converge-s", changed))
			b.Logf("%d of %d missions changed during the cut: offline at the root %s after the cut; after the restore %.0f bytes of link messages, %.0f on the wire (TLS handshake included), converged in %s",
				changed, total, detect.Round(100*time.Millisecond), f1-f0, w1-w0, converged.Round(100*time.Millisecond))
		}

		// 100 new missions down a 256 kbit/s uplink.
		if err := sites["edge"].Shape(256_000); err != nil {
			b.Fatal(err)
		}
		began := time.Now()
		parallel(b, 100, func(i int) error { return tr.rootCli.Create(ctx, mission(fmt.Sprintf("slow-%03d", i), "1")) })
		waitForValues(b, edge, "bench", total+100, nil, 5*time.Minute)
		slow := time.Since(began)
		if err := sites["edge"].Shape(0); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(slow.Seconds(), "100-missions-256kbps-s")
		b.Logf("100 missions over a 256 kbit/s uplink: all at the edge %s after the first Create", slow.Round(100*time.Millisecond))
	}
}

// parallel runs f for 0..n-1 on 8 workers and fails on the first error.
func parallel(b *testing.B, n int, f func(i int) error) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// waitForValues waits until a namespace holds n ConfigMaps (the API
// server's own kube-root-ca.crt aside) and those in want have their value.
func waitForValues(b *testing.B, c *localcluster.Cluster, ns string, n int, want map[string]string, timeout time.Duration) {
	b.Helper()
	waitFor(b, timeout, fmt.Sprintf("%d ConfigMaps in %s", n, c.Name), func(ctx context.Context) (bool, error) {
		l, err := c.Client().CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		count := 0
		for _, cm := range l.Items {
			if strings.HasPrefix(cm.Name, "kube-") {
				continue
			}
			count++
			if v, ok := want[cm.Name]; ok && cm.Data["v"] != v {
				return false, nil
			}
		}
		return count == n, nil
	})
}

// allReady waits until n missions are Ready at the root.
func allReady(b *testing.B, tr *tree, n int, timeout time.Duration) {
	b.Helper()
	waitFor(b, timeout, fmt.Sprintf("%d missions Ready at the root", n), func(ctx context.Context) (bool, error) {
		var l edgev1alpha1.MissionList
		if err := tr.rootCli.List(ctx, &l, client.InNamespace("bench")); err != nil {
			return false, err
		}
		ready := 0
		for _, m := range l.Items {
			if m.Status.Summary.Ready == 1 && m.Status.ObservedGeneration == m.Generation &&
				slices.ContainsFunc(m.Status.Conditions, func(c metav1.Condition) bool { return c.Type == "Ready" && c.Status == "True" }) {
				ready++
			}
		}
		return ready == n, nil
	})
}
