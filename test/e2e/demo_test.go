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
			regexp.MustCompile(`(?m)^eu-west\s+k8s\s+v1\.\d+\.\d+\s+2/2\s`),
			regexp.MustCompile(`(?m)^eu-central\s+k8s\s+v1\.\d+\.\d+\s+2/2\s`),
			regexp.MustCompile(`(?m)^factory-7\s+k3s\s+v1\.\d+\.\d+\s+2/2\s`),
			regexp.MustCompile(`export KUBECONFIG=\S+/root/kubeconfig`),
			regexp.MustCompile(`(?m)^eu-west\s+root\s+Connected\s+True\s+v1\.\d+\.\d+\s+k8s\s+2\s+2\s`),
			regexp.MustCompile(`(?m)^eu-central\s+root\s+Connected\s+True\s+v1\.\d+\.\d+\s+k8s\s+2\s+2\s`),
			regexp.MustCompile(`(?m)^factory-7\s+root\s+Connected\s+True\s+v1\.\d+\.\d+\s+k3s\s+2\s+2\s`),
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
	// 4 clusters: etcd or kine, API server, controller-manager, scheduler,
	// kwok, fornaxd.
	if len(procs) != 24 {
		t.Errorf("demo runs %d processes, want 24 (a previous run's processes left behind?)", len(procs))
	}

	out := run("demo", "down")
	if !strings.Contains(out, "Demo stopped (24 processes)") {
		t.Errorf("demo down said %q", out)
	}
	if left, _ := localcluster.FindProcesses(dir, 0); len(left) > 0 {
		t.Errorf("%d processes left after demo down", len(left))
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo down left %s behind (%v)", dir, err)
	}
}
