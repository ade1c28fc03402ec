package e2e

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fornax-edge/fornax/internal/localcluster"
)

// TestManifestsDryRun checks that what 'fornaxctl init --print' and 'join
// --print' emit, and the kustomize directories themselves, are accepted by the
// real API server (server-side dry run: admission and schema, nothing
// created). No container runtime runs here, so fornaxd is not started from
// them; TestStaticBinaries checks what the image is built from.
func TestManifestsDryRun(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	c, err := localcluster.Start(ctx, localcluster.Options{Name: "manifests", Dir: filepath.Join(t.TempDir(), "manifests")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	bin, err := localcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	kubectlPath := filepath.Join(bin, localcluster.BinKubectl)
	// A dry run creates nothing, so the namespace the namespaced objects
	// land in must exist.
	kubectl(t, c, "create", "namespace", "fornax-system")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		print []string // fornaxctl arguments, or nil for kubectl -k
		dir   string
	}{
		{"init --print", []string{"init", "--print", "--cluster-name", "eu", "--endpoint", "eu.example.com:7443"}, ""},
		{"join --print", []string{"join", "--print", "--image", "registry.example/fornax:v1"}, ""},
		{"init --print --middle", []string{"init", "--print", "--middle", "--endpoint", "eu.example.com:7443"}, ""},
		{"kubectl apply -k config/deploy/hub", nil, "hub"},
		{"kubectl apply -k config/deploy/middle", nil, "middle"},
		{"kubectl apply -k config/deploy/agent", nil, "agent"},
		{"join --print --gateway", []string{"join", "--print", "--gateway"}, ""},
		{"kubectl apply -k config/deploy/gateway", nil, "gateway"},
	} {
		args := []string{"--kubeconfig", c.Kubeconfig, "apply", "--server-side", "--dry-run=server"}
		var stdin string
		if tc.print != nil {
			stdin = fornaxctl(t, tc.print...)
			args = append(args, "-f", "-")
		} else {
			args = append(args, "-k", filepath.Join(root, "config", "deploy", tc.dir))
		}
		cmd := exec.CommandContext(ctx, kubectlPath, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: the API server refused it: %v\n%s", tc.name, err, out)
			continue
		}
		for _, want := range []string{"deployment.apps/fornaxd serverside-applied (server dry run)", "clusterrole.rbac.authorization.k8s.io/fornaxd", "poddisruptionbudget.policy/fornaxd"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s: no %q in:\n%s", tc.name, want, out)
			}
		}
		if (tc.dir == "gateway" || slices.Contains(tc.print, "--gateway")) && !strings.Contains(string(out), "daemonset.apps/fornax-cni serverside-applied") {
			t.Errorf("%s: no fornax-cni DaemonSet:\n%s", tc.name, out)
		}
		hub := tc.dir == "hub" || tc.dir == "middle" || (len(tc.print) > 0 && tc.print[0] == "init")
		if hub && (!strings.Contains(string(out), "service/fornax-hub serverside-applied") || !strings.Contains(string(out), "service/fornax-hub-webhook serverside-applied")) {
			t.Errorf("%s: no Services fornax-hub and fornax-hub-webhook:\n%s", tc.name, out)
		}
		// What missions may deploy: at an edge or middle cluster, never at the root.
		apply := strings.Contains(string(out), "clusterrole.rbac.authorization.k8s.io/fornax-agent-apply")
		if wantApply := !hub || tc.dir == "middle" || slices.Contains(tc.print, "--middle"); apply != wantApply {
			t.Errorf("%s: the mission apply rights present: %t, want %t:\n%s", tc.name, apply, wantApply, out)
		}
		if tc.print != nil && !strings.Contains(string(out), "customresourcedefinition.apiextensions.k8s.io/missions.edge.fornax.io") {
			t.Errorf("%s: no CRDs:\n%s", tc.name, out)
		}
	}
}

// TestStaticBinaries builds fornaxd, fornaxctl and fornax-cni as the Dockerfile does
// (CGO_ENABLED=0) and checks they need no dynamic loader: they run on a
// distroless static base.
func TestStaticBinaries(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-o", out+"/", "./cmd/fornaxd", "./cmd/fornaxctl", "./cmd/fornax-cni")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, b)
	}
	for _, name := range []string{"fornaxd", "fornaxctl", "fornax-cni"} {
		f, err := elf.Open(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s asks for a dynamic loader: it would not run on a static base image", name)
			}
		}
		_ = f.Close()
	}
}
