package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/localcluster"
	"github.com/fornax-edge/fornax/internal/simagent"
)

// hubScaleSizes are the fleet sizes BenchmarkHubScale measures;
// FORNAX_BENCH_SCALE (comma-separated) overrides them.
func hubScaleSizes() []int {
	sizes := []int{1000, 5000, 10000}
	if v := os.Getenv("FORNAX_BENCH_SCALE"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
				sizes = append(sizes, n)
			}
		}
	}
	return sizes
}

// simProcesses is how many simagents processes share a fleet: each holds its
// share of the connections, as KubeEdge's edgemark pods do.
const simProcesses = 4

// BenchmarkHubScale puts N simulated clusters (hack/simagents: separate
// processes, the real join, protocol and TLS, default timers) on one real
// fornaxd hub on a real API server, for N = 1,000, 5,000 and 10,000, and
// measures: the time until all N show Connected at the root; the hub's RSS
// and CPU and the root's API writes over an idle window of 130 s (two
// heartbeats); one mission to all N until the root's Mission counts N Ready;
// 10 % of the clusters cut off until the root shows them Offline, on a
// settled hub and again while it writes every EdgeCluster's missions summary
// after the mission changed (link changes go first); and a
// reconnect storm of all N (every stream dropped at once) until all are
// Connected again, with the hub's peak RSS. Run with -benchtime=1x.
func BenchmarkHubScale(b *testing.B) {
	sim := filepath.Join(b.TempDir(), "simagents")
	if out, err := exec.Command("go", "build", "-o", sim, "../../hack/simagents").CombinedOutput(); err != nil {
		b.Fatalf("building simagents: %v\n%s", err, out)
	}
	for _, n := range hubScaleSizes() {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				hubScale(b, sim, n)
			}
		})
	}
}

// fleetProc is one simagents process and its control API.
type fleetProc struct {
	d   *localcluster.Daemon
	url string
}

func (f fleetProc) post(b *testing.B, path string) {
	resp, err := http.Post(f.url+path, "", nil)
	if err != nil {
		b.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("%s%s: %s", f.url, path, resp.Status)
	}
}

func (f fleetProc) stats(b *testing.B, query string) simagent.Stats {
	resp, err := http.Get(f.url + "/stats?" + query)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var st simagent.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		b.Fatal(err)
	}
	return st
}

func fleetStats(b *testing.B, fleet []fleetProc, query string) simagent.Stats {
	var sum simagent.Stats
	for _, f := range fleet {
		st := f.stats(b, query)
		sum.Clusters += st.Clusters
		sum.Up += st.Up
		sum.Sent += st.Sent
		sum.Received += st.Received
		sum.StreamErrors += st.StreamErrors
		sum.Holding += st.Holding
	}
	return sum
}

// stateCounter counts the root's EdgeClusters by connection state from a
// watch: polling a list of 10,000 objects every 100 ms would load the API
// server more than the hub under test does.
type stateCounter struct{ c cache.Cache }

func newStateCounter(b *testing.B, tr *tree) stateCounter {
	scheme := runtime.NewScheme()
	if err := edgev1alpha1.AddToScheme(scheme); err != nil {
		b.Fatal(err)
	}
	c, err := cache.New(tr.root.RESTConfig(), cache.Options{Scheme: scheme, ByObject: map[client.Object]cache.ByObject{
		&edgev1alpha1.EdgeCluster{}: {Transform: cache.TransformStripManagedFields()}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go func() { _ = c.Start(ctx) }()
	if _, err := c.GetInformer(ctx, &edgev1alpha1.EdgeCluster{}); err != nil {
		b.Fatal(err)
	}
	if !c.WaitForCacheSync(ctx) {
		b.Fatal("the EdgeCluster watch did not sync")
	}
	return stateCounter{c}
}

func (sc stateCounter) count(ctx context.Context, state edgev1alpha1.ConnectionState) (int, error) {
	list := &edgev1alpha1.EdgeClusterList{}
	if err := sc.c.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return 0, err
	}
	n := 0
	for _, ec := range list.Items {
		if ec.Status.State == state {
			n++
		}
	}
	return n, nil
}

func hubScale(b *testing.B, sim string, n int) {
	pprof := freeAddr(b)
	tr, metricsURL := benchTree(b, "--keepalive-time", link.KeepaliveTime.String(), "--keepalive-timeout", link.KeepaliveTimeout.String(),
		"--pprof-bind-address", pprof)
	hub := tr.root.Components()["fornaxd"]
	rss0 := rss(b, hub)
	states := newStateCounter(b, tr)

	// Joins: each process gets its share and two tokens (two workers).
	joinBegan := time.Now()
	fleet := make([]fleetProc, simProcesses)
	per := (n + simProcesses - 1) / simProcesses
	for p := range simProcesses {
		count := min(per, n-p*per)
		args := []string{"--from", strconv.Itoa(p * per), "--count", strconv.Itoa(count), "--control", "127.0.0.1:0"}
		for range 2 {
			parent, token, hash := tr.token(b, "--uses", strconv.Itoa(count))
			args = append(args, "--parent", parent, "--ca-hash", hash, "--token", token)
		}
		d, err := tr.root.Run(fmt.Sprintf("simagents-%d", p), sim, args...)
		if err != nil {
			b.Fatal(err)
		}
		fleet[p].d = d
	}
	for p := range fleet {
		waitFor(b, 10*time.Minute, fmt.Sprintf("simagents-%d joined and serving its control API", p), func(context.Context) (bool, error) {
			if fleet[p].d.Exited() {
				return false, fmt.Errorf("simagents-%d exited:\n%s", p, fleet[p].d.Log(20))
			}
			fleet[p].url = controlURL(fleet[p].d.LogPath())
			return fleet[p].url != "", nil
		})
	}
	joined := time.Since(joinBegan)
	waitFor(b, 10*time.Minute, fmt.Sprintf("all %d simulated clusters Connected at the root", n), func(ctx context.Context) (bool, error) {
		got, err := states.count(ctx, edgev1alpha1.StateConnected)
		return got == n, err
	})
	connected := time.Since(joinBegan)
	b.Logf("%d clusters: joined in %s (%.0f joins/s), all Connected at the root %s after the first join",
		n, joined.Round(time.Millisecond), float64(n)/joined.Seconds(), connected.Round(time.Millisecond))

	// Idle: a measurement window of two heartbeats; nothing happens on purpose.
	const window = 130 * time.Second
	w0, a0, c0 := metric(b, metricsURL, "fornax_hub_status_writes_total"), apiWrites(b, tr.root), cpuTicks(b, hub)
	s0 := fleetStats(b, fleet, "")
	began := time.Now()
	time.Sleep(window)
	elapsed := time.Since(began).Seconds()
	w1, a1, c1 := metric(b, metricsURL, "fornax_hub_status_writes_total"), apiWrites(b, tr.root), cpuTicks(b, hub)
	s1 := fleetStats(b, fleet, "")
	idleRSS := rss(b, hub)
	saveProfile(b, pprof, "heap", fmt.Sprintf("hub-%d-idle.heap", n))

	// One mission to all N.
	ctx := context.Background()
	if _, err := tr.root.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "partition"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	m := cm(b, "to-all", "1", edgev1alpha1.Placement{ClusterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{edgev1alpha1.LabelDepth: "1"}}})
	c2 := cpuTicks(b, hub)
	missionBegan := time.Now()
	if err := tr.rootCli.Create(ctx, m); err != nil {
		b.Fatal(err)
	}
	var delivered time.Duration
	waitFor(b, 5*time.Minute, fmt.Sprintf("the mission Ready in all %d clusters at the root", n), func(ctx context.Context) (bool, error) {
		if delivered == 0 && fleetStats(b, fleet, "namespace=partition&name=to-all&generation=1").Holding == n {
			delivered = time.Since(missionBegan)
		}
		got := &edgev1alpha1.Mission{}
		if err := tr.rootCli.Get(ctx, client.ObjectKeyFromObject(m), got); err != nil {
			return false, err
		}
		return got.Status.Summary.Ready == int32(n), nil
	})
	missionToAll := time.Since(missionBegan)
	if delivered == 0 {
		// Held by all and Ready at the root between two polls: held by then.
		delivered = missionToAll
	}
	missionCPU := float64(cpuTicks(b, hub)-c2) / 100
	b.Logf("one mission to %d clusters: held by all %s after Create, all Ready at the root after %s; hub CPU %.1f s",
		n, delivered.Round(time.Millisecond), missionToAll.Round(time.Millisecond), missionCPU)

	// Every cluster's EdgeCluster shows the mission too (its missions
	// summary): N status writes that follow the mission's. Let them drain,
	// so that the next phase measures the disconnect, not this backlog.
	settleBegan := time.Now()
	waitFor(b, 10*time.Minute, "the hub's EdgeCluster status queue empty", func(context.Context) (bool, error) {
		return metricMatching(b, metricsURL, "workqueue_depth", `name="edgecluster-status"`) == 0, nil
	})
	settled := time.Since(missionBegan)
	b.Logf("every EdgeCluster's status written after the mission: %s after Create (%s after the mission was Ready at the root)",
		settled.Round(time.Millisecond), time.Since(settleBegan).Round(time.Millisecond))

	// 10 % cut off (their streams closed, held down).
	tenth := n / 10
	// How the hub's EdgeCluster status controller fared over the phase.
	reconciles := func() map[string]float64 {
		out := map[string]float64{}
		for _, result := range []string{"success", "error", "requeue", "requeue_after"} {
			out[result] = metricMatching(b, metricsURL, "controller_runtime_reconcile_total", `controller="edgecluster-status"`, `result="`+result+`"`)
		}
		return out
	}
	r0 := reconciles()
	var offlineProfiled sync.WaitGroup
	offlineProfiled.Go(func() { saveProfile(b, pprof, "profile?seconds=10", fmt.Sprintf("hub-%d-offline.cpu", n)) })
	downBegan := time.Now()
	for _, f := range fleet { // the first tenth of each process's share
		f.post(b, "/down?n="+strconv.Itoa(tenth/simProcesses))
	}
	wantDown := (tenth / simProcesses) * simProcesses
	waitFor(b, 5*time.Minute, fmt.Sprintf("%d clusters Offline at the root", wantDown), func(ctx context.Context) (bool, error) {
		got, err := states.count(ctx, edgev1alpha1.StateOffline)
		return got == wantDown, err
	})
	offline := time.Since(downBegan)
	offlineProfiled.Wait()
	r1 := reconciles()
	b.Logf("EdgeCluster status reconciles while %d went Offline: %.0f success, %.0f error, %.0f requeue, %.0f requeue_after",
		wantDown, r1["success"]-r0["success"], r1["error"]-r0["error"], r1["requeue"]-r0["requeue"], r1["requeue_after"]-r0["requeue_after"])
	for _, f := range fleet {
		f.post(b, "/up")
	}
	waitFor(b, 10*time.Minute, fmt.Sprintf("all %d Connected again", n), func(ctx context.Context) (bool, error) {
		got, err := states.count(ctx, edgev1alpha1.StateConnected)
		return got == n, err
	})
	b.Logf("%d clusters down: Offline at the root after %s", wantDown, offline.Round(time.Millisecond))

	// The same cut while the hub writes every EdgeCluster's missions summary
	// (the mission changed: N status writes queued): the disconnects are
	// link changes, served ahead of that backlog.
	if err := tr.rootCli.Get(ctx, client.ObjectKeyFromObject(m), m); err != nil {
		b.Fatal(err)
	}
	m.Spec.Resources = cm(b, "to-all", "2", m.Spec.Placement).Spec.Resources
	if err := tr.rootCli.Update(ctx, m); err != nil {
		b.Fatal(err)
	}
	var backlog float64
	waitFor(b, time.Minute, "a backlog of EdgeCluster status writes", func(context.Context) (bool, error) {
		backlog = metricMatching(b, metricsURL, "workqueue_depth", `name="edgecluster-status"`)
		return backlog >= float64(n/4), nil
	})
	downBegan = time.Now()
	for _, f := range fleet {
		f.post(b, "/down?n="+strconv.Itoa(tenth/simProcesses))
	}
	waitFor(b, 5*time.Minute, fmt.Sprintf("%d clusters Offline at the root during the backlog", wantDown), func(ctx context.Context) (bool, error) {
		got, err := states.count(ctx, edgev1alpha1.StateOffline)
		return got == wantDown, err
	})
	offlineInBacklog := time.Since(downBegan)
	backlogLeft := metricMatching(b, metricsURL, "workqueue_depth", `name="edgecluster-status"`)
	for _, f := range fleet {
		f.post(b, "/up")
	}
	waitFor(b, 10*time.Minute, fmt.Sprintf("all %d Connected again", n), func(ctx context.Context) (bool, error) {
		got, err := states.count(ctx, edgev1alpha1.StateConnected)
		return got == n, err
	})
	b.Logf("%d clusters down while %.0f EdgeCluster status reconciles were queued: Offline at the root after %s (%.0f still queued then)",
		wantDown, backlog, offlineInBacklog.Round(time.Millisecond), backlogLeft)

	// Reconnect storm: every stream dropped at once.
	var peak float64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				peak = max(peak, rss(b, hub))
			}
		}
	})
	var profiled sync.WaitGroup
	profiled.Go(func() { saveProfile(b, pprof, "profile?seconds=20", fmt.Sprintf("hub-%d-storm.cpu", n)) })
	c3 := cpuTicks(b, hub)
	stormBegan := time.Now()
	for _, f := range fleet {
		f.post(b, "/drop")
	}
	waitFor(b, 5*time.Minute, fmt.Sprintf("all %d simulated clusters reconnected", n), func(context.Context) (bool, error) {
		return fleetStats(b, fleet, "").Up == n, nil
	})
	streamsBack := time.Since(stormBegan)
	// Every stream is back once each cluster saw a new Welcome; the root then
	// shows them Connected (they may never have left: a drop shorter than the
	// status interval need not be written).
	waitFor(b, 10*time.Minute, fmt.Sprintf("all %d Connected at the root after the storm", n), func(ctx context.Context) (bool, error) {
		got, err := states.count(ctx, edgev1alpha1.StateConnected)
		return got == n, err
	})
	stormConnected := time.Since(stormBegan)
	stormCPU := float64(cpuTicks(b, hub)-c3) / 100
	close(stop)
	sampler.Wait()
	profiled.Wait()
	saveProfile(b, pprof, "heap", fmt.Sprintf("hub-%d-after-storm.heap", n))
	final := fleetStats(b, fleet, "")
	b.Logf("reconnect storm of %d: all streams back after %s, all Connected at the root after %s; hub peak RSS %.0f MiB, CPU %.1f s; stream errors %d",
		n, streamsBack.Round(time.Millisecond), stormConnected.Round(time.Millisecond), peak/(1<<20), stormCPU, final.StreamErrors)

	for _, f := range fleet {
		f.d.Stop()
	}
	b.ReportMetric(float64(n), "clusters-connected")
	b.ReportMetric(float64(n)/joined.Seconds(), "joins/s")
	b.ReportMetric(connected.Seconds(), "all-connected-s")
	b.ReportMetric(idleRSS/(1<<20), "hub-MiB")
	b.ReportMetric((idleRSS-rss0)/float64(n)/1024, "hub-KiB/cluster")
	b.ReportMetric(100*float64(c1-c0)/100/elapsed, "hub-cpu-%-idle")
	b.ReportMetric(float64(s1.Sent+s1.Received-s0.Sent-s0.Received)*8/elapsed/float64(n), "idle-bit/s/cluster")
	b.ReportMetric((w1-w0)/elapsed, "status-writes/s")
	b.ReportMetric((a1-a0)/elapsed, "api-writes/s")
	b.ReportMetric(delivered.Seconds(), "mission-held-by-all-s")
	b.ReportMetric(missionToAll.Seconds(), "mission-to-all-s")
	b.ReportMetric(offline.Seconds(), "offline-10pct-s")
	b.ReportMetric(settled.Seconds(), "mission-on-every-edgecluster-s")
	b.ReportMetric(offlineInBacklog.Seconds(), "offline-10pct-in-backlog-s")
	b.ReportMetric(streamsBack.Seconds(), "storm-streams-back-s")
	b.ReportMetric(stormConnected.Seconds(), "storm-all-connected-s")
	b.ReportMetric(peak/(1<<20), "storm-peak-hub-MiB")
}

// controlURL reads a simagents log for its control API's address.
func controlURL(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "control "); ok {
			return rest
		}
	}
	return ""
}
