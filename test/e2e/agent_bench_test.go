package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

// BenchmarkAgent measures a leaf fornaxd (agent role) with the default timers
// (report 10 s, heartbeat 60 s) and keepalives of 10 s / 5 s (default 15 s / 5 s): resident memory and CPU
// over a 30 s idle window, first with no mission, then holding 100 ConfigMap
// missions (all applied and Ready at the root). Run with -benchtime=1x.
func BenchmarkAgent(b *testing.B) {
	tr := newTree(b, []string{"--log-level", "warn"}, localcluster.Options{Name: "root"}, localcluster.Options{Name: "leaf"})
	pprof := freeAddr(b)
	tr.joinBelow(b, "leaf", "root", "", false, map[string]string{}, "--report-interval", "10s", "--heartbeat-interval", "60s",
		"--keepalive-time", "10s", "--keepalive-timeout", "5s", "--log-level", "warn", "--pprof-bind-address", pprof)
	leaf := tr.edges["leaf"]
	ctx := context.Background()
	waitFor(b, time.Minute, "the leaf Connected at the root", func(ctx context.Context) (bool, error) {
		ec, err := tr.ec(b, ctx, "leaf")
		return err == nil && condStatus(ec, edgev1alpha1.EdgeClusterConnected) == metav1.ConditionTrue, nil
	})
	for _, c := range []*localcluster.Cluster{tr.root, leaf} {
		if _, err := c.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	pid := leaf.Components()["fornaxd"]
	window := func(label string) (rssMiB, cpuPct float64) {
		t0, c0 := time.Now(), cpuTicks(b, pid)
		time.Sleep(30 * time.Second)              // the measurement window: nothing happens on purpose
		cpu := float64(cpuTicks(b, pid)-c0) / 100 // USER_HZ
		// Memory first: serving a profile maps more of the binary.
		rssMiB = rss(b, pid) / (1 << 20)
		anon, file := rssSplit(b, pid)
		b.ReportMetric(anon/(1<<20), "agent-MiB-anon-"+label)
		b.ReportMetric(file/(1<<20), "agent-MiB-file-"+label)
		saveProfile(b, pprof, "heap", "agent-"+label+".heap")
		return rssMiB, 100 * cpu / time.Since(t0).Seconds()
	}
	for b.Loop() {
		idleRSS, idleCPU := window("idle")
		parallel(b, 100, func(i int) error {
			m := cm(b, fmt.Sprintf("m-%03d", i), "1", edgev1alpha1.Placement{Clusters: []string{"leaf"}})
			m.Namespace = "bench"
			return tr.rootCli.Create(ctx, m)
		})
		allReady(b, tr, 100, 5*time.Minute)
		busyRSS, busyCPU := window("100-missions")
		b.ReportMetric(idleRSS, "agent-MiB-idle")
		b.ReportMetric(idleCPU, "agent-cpu-%-idle")
		b.ReportMetric(busyRSS, "agent-MiB-100-missions")
		b.ReportMetric(busyCPU, "agent-cpu-%-100-missions")
		b.Logf("leaf fornaxd: idle %.1f MiB, %.2f %% of a core; holding 100 missions %.1f MiB, %.2f %% of a core",
			idleRSS, idleCPU, busyRSS, busyCPU)
	}
}

// rss is a process's resident memory in bytes.
func rss(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// rssSplit is a process's resident memory in bytes: anonymous (heap,
// stacks) and file-backed (the binary's pages).
func rssSplit(b *testing.B, pid int) (anon, file float64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "Anonymous:":
			anon = kb * 1024
		case "Rss:":
			file += kb * 1024
		}
	}
	return anon, file - anon
}

// saveProfile writes one of a process's pprof profiles (from its
// --pprof-bind-address: "heap", "profile?seconds=20", ...) to
// $FORNAX_BENCH_PROFILE_DIR/<file>, if that is set.
func saveProfile(b *testing.B, addr, profile, file string) {
	dir := os.Getenv("FORNAX_BENCH_PROFILE_DIR")
	if dir == "" {
		return
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/" + profile)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), raw, 0o644); err != nil {
		b.Fatal(err)
	}
}

// cpuTicks is a process's user + system CPU time in clock ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(raw)[strings.LastIndexByte(string(raw), ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}
