// Package e2e drives Fornax's binaries the way a user does, against real
// local clusters.
package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fornax-edge/fornax/internal/localcluster"
)

// TestDemoUpDown runs `fornaxctl demo up` twice (it must replace the first
// tree) and `demo down`, checking what the user is shown and that nothing is
// left running.
func TestDemoUpDown(t *testing.T) {
	ctl := fornaxctlBin
	dir := filepath.Join(t.TempDir(), "demo")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), ctl, append(args, "--dir", dir)...)
		began := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fornaxctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("fornaxctl %s (%s):\n%s", strings.Join(args, " "), time.Since(began).Round(time.Millisecond), out)
		return string(out)
	}
	// The demo detaches its clusters from fornaxctl, so the owner-based leak
	// check cannot see them: kill by directory whatever a failure leaves.
	t.Cleanup(func() {
		_ = localcluster.KillProcesses(context.Background(), dir)
	})

	for i := range 2 {
		out := run("demo", "up")
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`(?m)^root\s+k8s\s+v1\.\d+\.\d+\s+1/1\s+\S+/root/kubeconfig$`),
			regexp.MustCompile(`(?m)^eu\s+k8s\s+v1\.\d+\.\d+\s+1/1\s`),
			regexp.MustCompile(`(?m)^us\s+k8s\s+v1\.\d+\.\d+\s+1/1\s`),
			regexp.MustCompile(`(?m)^dublin\s+k8s\s+v1\.\d+\.\d+\s+2/2\s`),
			regexp.MustCompile(`(?m)^factory-7\s+k3s\s+v1\.\d+\.\d+\s+2/2\s`),
			// the tree, two levels deep
			regexp.MustCompile(`(?m)^[│ ]\s+[├└]── factory-7\s+Ready\s+k3s`),
			regexp.MustCompile(`(?m)^[├└]── us\s+Ready`),
			// kubectl get edgeclusters: the grandchildren with their parent
			regexp.MustCompile(`(?m)^factory-7\s+eu\s+Connected\s+True\s+v1\.\d+\.\d+\s+k3s\s+2\s+2\s`),
			regexp.MustCompile(`(?m)^dublin\s+eu\s+Connected\s+True\s`),
			// the sample missions Ready everywhere they go
			regexp.MustCompile(`(?m)^shop\s+shop\s+3\s+3\s+0\s+0\s`),
			regexp.MustCompile(`(?m)^shop\s+telemetry\s+4\s+4\s+0\s+0\s`),
			regexp.MustCompile(`export KUBECONFIG=\S+/root/kubeconfig`),
		} {
			if !want.MatchString(out) {
				t.Errorf("run %d: output lacks %s", i+1, want)
			}
		}
		if i == 1 && !strings.Contains(out, "Removing the previous demo") {
			t.Errorf("second demo up did not say it replaced the first")
		}
	}
	procs, err := localcluster.FindProcesses(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 5 clusters: etcd or kine, API server, controller-manager, scheduler,
	// kwok, fornaxd.
	if len(procs) != 30 {
		t.Errorf("demo runs %d processes, want 30 (a previous run's processes left behind?)", len(procs))
	}

	out := run("demo", "down")
	if !strings.Contains(out, "Demo stopped (30 processes)") {
		t.Errorf("demo down said %q", out)
	}
	if left, _ := localcluster.FindProcesses(dir, 0); len(left) > 0 {
		t.Errorf("%d processes left after demo down", len(left))
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo down left %s behind (%v)", dir, err)
	}
}
