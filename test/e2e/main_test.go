package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/localcluster"
)

// Paths of the binaries built from this checkout for the tests.
var fornaxctlBin, fornaxdBin string

func TestMain(m *testing.M) {
	code := localcluster.RunTests(m, nil, func(*localcluster.Cluster) error { return buildBinaries() })
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binDir holds the binaries built for the tests.
var binDir string

// buildBinaries builds fornaxctl, fornaxd and fornax-cni from this checkout,
// side by side as make build puts them (the demo finds fornaxd and fornax-cni
// next to fornaxctl; the network tests run fornax-cni from binDir).
func buildBinaries() error {
	// controller-runtime's client logs warnings (deprecations, throttling).
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	dir, err := os.MkdirTemp("", "fornax-e2e-bin-")
	if err != nil {
		return err
	}
	binDir = dir
	for _, b := range []struct {
		path *string
		pkg  string
	}{{&fornaxctlBin, "fornaxctl"}, {&fornaxdBin, "fornaxd"}, {new(string), "fornax-cni"}} {
		*b.path = filepath.Join(dir, b.pkg)
		// Built as the image builds them (Dockerfile): static, no symbol
		// table, so the memory benchmarks measure what ships.
		cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=auto", "-ldflags=-s -w", "-o", *b.path, "../../cmd/"+b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %w\n%s", b.pkg, err, out)
		}
	}
	return nil
}

// fornaxctl runs the CLI as a user would and returns its standard output.
func fornaxctl(t testing.TB, args ...string) string {
	t.Helper()
	out, stderr, err := fornaxctlErr(t, args...)
	if err != nil {
		t.Fatalf("fornaxctl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// fornaxctlErr runs the CLI and returns stdout, stderr and the exit error.
func fornaxctlErr(t testing.TB, args ...string) (string, string, error) {
	t.Helper()
	return runCmd(t, fornaxctlBin, args...)
}

// runCmd runs a program with a deadline and returns stdout, stderr and the exit error.
func runCmd(t testing.TB, path string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func edgeClient(t testing.TB, c *localcluster.Cluster) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := edgev1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	cfg := c.RESTConfig()
	cfg.QPS, cfg.Burst = 100, 200 // tests poll every 100 ms; client-go's 5 QPS would throttle them
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil && ctx.Err() == nil {
			last = err // the last real error, not the deadline's
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last error: %v)", what, err, last)
	}
}
