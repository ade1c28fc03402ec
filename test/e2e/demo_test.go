// Package e2e drives Fornax's binaries the way a user does, against real
// local clusters.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fornax-edge/fornax/internal/demo"
	"github.com/fornax-edge/fornax/internal/localcluster"
	"github.com/fornax-edge/fornax/internal/netlab"
)

// TestDemoUpDown runs `fornaxctl demo up` twice (the second must replace the
// first tree), first without the network part and then as `make demo` does
// (with it when run as root, as CI is), and `demo down`, checking what the
// user is shown and that nothing is left running or in the kernel.
func TestDemoUpDown(t *testing.T) {
	ctl := fornaxctlBin
	dir := filepath.Join(t.TempDir(), "demo")
	withNet := netlab.Check() == nil
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
		if withNet {
			_, _ = netlab.Remove(demo.NetPrefix(dir))
		}
	})

	for i, args := range [][]string{{"demo", "up", "--network", "off"}, {"demo", "up"}} {
		out := run(args...)
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
			// the tree joined with the commands of docs/link.md, shown as run
			regexp.MustCompile(`(?m)^  eu\s+\$ fornaxctl token create --kubeconfig eu/kubeconfig --ttl 1h --description 'demo: factory-7'$`),
			regexp.MustCompile(`(?m)^  factory-7\s+\$ fornaxctl join --kubeconfig factory-7/kubeconfig --parent [0-9.]+:[0-9]+ --token [a-z0-9]{6}\.… ` +
				`--ca-hash sha256:[0-9a-f]{8}… --name factory-7 --labels topology\.fornax\.io/org=manufacturing,topology\.fornax\.io/site=factory-7$`),
			regexp.MustCompile(`(?m)^  eu\s+\$ fornaxctl init --kubeconfig eu/kubeconfig --endpoint [0-9.]+:[0-9]+$`),
			regexp.MustCompile(`(?m)^  dublin\s+\$ fornaxd --kubeconfig dublin/kubeconfig .* &$`),
			regexp.MustCompile(`(?m)^  root\s+\$ kubectl --kubeconfig root/kubeconfig apply --server-side -f examples/missions/$`),
			regexp.MustCompile(`(?m)^  curl -s http://[0-9.]+:[0-9]+/metrics \| grep \^fornax_hub `),
		} {
			if !want.MatchString(out) {
				t.Errorf("run %d: output lacks %s", i+1, want)
			}
		}
		if i == 1 && !strings.Contains(out, "Removing the previous demo") {
			t.Errorf("second demo up did not say it replaced the first")
		}
		checkDemoNetwork(t, out, i == 1 && withNet)
		// The sample manifests are left in the demo's directory to edit.
		if _, err := os.Stat(filepath.Join(dir, "examples", "missions", "shop.yaml")); err != nil {
			t.Errorf("run %d: examples/missions/shop.yaml not in the demo's directory: %v", i+1, err)
		}
		// The root's fornaxd serves /metrics where the demo says.
		if m := regexp.MustCompile(`curl -s (http://\S+/metrics)`).FindStringSubmatch(out); m != nil {
			if got := sample(scrape(t, m[1]), "fornax_hub_connected_children", nil); got != 2 {
				t.Errorf("run %d: the root's hub has %v connected children, want 2 (eu, us)", i+1, got)
			}
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
	// Each cluster's site, a router per gateway (one VPC), a pod per gateway.
	namespaces := 0
	if withNet {
		namespaces = 5 + 3 + 3
	}
	if want := fmt.Sprintf("Demo stopped (30 processes), %d network namespaces and ", namespaces); !strings.Contains(out, want) {
		t.Errorf("demo down said %q, want %q", out, want)
	}
	if withNet {
		if left := netlab.Leftovers(demo.NetPrefix(dir)); len(left) > 0 {
			t.Errorf("demo down left in the kernel: %v", left)
		}
	}
	if left, _ := localcluster.FindProcesses(dir, 0); len(left) > 0 {
		t.Errorf("%d processes left after demo down", len(left))
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo down left %s behind (%v)", dir, err)
	}
}

// checkDemoNetwork checks the network part of a demo's output: present (the
// VPC across three clusters and six pings that got replies, the gateways as
// a cluster sees them, the command to ping by hand) or said to be left out.
func checkDemoNetwork(t *testing.T, out string, want bool) {
	t.Helper()
	if !want {
		if strings.Contains(out, "Pinging between the pods") {
			t.Errorf("the network part ran, but it was not wanted (--network off, or not root)")
		}
		if netlab.Check() != nil && !strings.Contains(out, "Leaving the network part out") {
			t.Errorf("without root the demo did not say it left the network part out")
		}
		return
	}
	pings := regexp.MustCompile(`(?m)^(\S+)/probe\s+(\S+)/probe\s+10\.77\.\d+\.\d+\s+\d[\d.]*[µm]?s$`).FindAllStringSubmatch(out, -1)
	pairs := map[string]bool{}
	for _, m := range pings {
		pairs[m[1]+">"+m[2]] = m[1] != m[2]
	}
	for _, from := range demo.NetworkClusters {
		for _, to := range demo.NetworkClusters {
			if from != to && !pairs[from+">"+to] {
				t.Errorf("no ping reply from %s's pod to %s's in the output", from, to)
			}
		}
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^vpc\.network\.fornax\.io/telemetry\s+10\.77\.0\.0/16\s+\d+\s+acme\s+\["dublin","factory-7","us"\]`),
		regexp.MustCompile(`(?m)^subnet\.network\.fornax\.io/telemetry-factory-7\s+telemetry\s+10\.77\.2\.0/24\s+factory-7\s+True\s`),
		// The three gateways as the root sees them: each reported Ready.
		regexp.MustCompile(`(?m)^dublin\s+10\.\d+\.\d+\.\d+\s+\["telemetry"\]\s+True\s`),
		regexp.MustCompile(`(?m)^factory-7\s+10\.\d+\.\d+\.\d+\s+\["telemetry"\]\s+True\s`),
		regexp.MustCompile(`(?m)^us\s+10\.\d+\.\d+\.\d+\s+\["telemetry"\]\s+True\s`),
		regexp.MustCompile(`ip netns exec fxdm[0-9a-f]{4}-pod-dublin ping -c 3 10\.77\.2\.\d+ `),
	} {
		if !re.MatchString(out) {
			t.Errorf("network output lacks %s", re)
		}
	}
}
