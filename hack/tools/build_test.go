// Package tools holds the test of build.sh, the script that builds the pinned
// third-party binaries; each tool's own module lives in a sub-directory.
package tools

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runBuild runs build.sh with the given PATH and extra environment, in a
// scratch bin and cache so nothing real is touched.
func runBuild(t *testing.T, path string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "bash", "build.sh", "etcd")
	cmd.Env = append([]string{
		"PATH=" + path,
		"HOME=" + t.TempDir(),
		"FORNAX_BIN=" + t.TempDir(),
		"FORNAX_TOOLS_CACHE=" + t.TempDir(),
	}, env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// fakeGo writes a `go` that reports version v and otherwise does what the real
// go does, and returns a PATH that finds it first.
func fakeGo(t *testing.T, v string) string {
	t.Helper()
	dir := t.TempDir()
	real, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no Go on PATH")
	}
	script := "#!/bin/sh\nif [ \"$1 $2\" = \"env GOVERSION\" ]; then echo " + v + "; exit 0; fi\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir + ":" + os.Getenv("PATH")
}

func TestBuildRejectsOldGo(t *testing.T) {
	out, err := runBuild(t, fakeGo(t, "go1.22.5"))
	if err == nil || !strings.Contains(out, "Go 1.22.5 is too old") || !strings.Contains(out, "go.dev/dl") {
		t.Fatalf("with Go 1.22: err=%v, output:\n%s\nwant a failure saying Go is too old and where to get a newer one", err, out)
	}
}

func TestBuildWithoutGo(t *testing.T) {
	// A PATH with only the basic utilities the script needs, and no go.
	dir := t.TempDir()
	for _, tool := range []string{"bash", "awk", "sha256sum", "cut", "cat", "dirname", "mkdir"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("no %s on PATH", tool)
		}
		if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runBuild(t, dir)
	if err == nil || !strings.Contains(out, "Go is not installed") {
		t.Fatalf("without Go: err=%v, output:\n%s\nwant a failure saying Go is not installed", err, out)
	}
}

func TestBuildWithUnreachableProxy(t *testing.T) {
	began := time.Now()
	// Nothing listens on port 1: the proxy probe fails at once.
	out, err := runBuild(t, os.Getenv("PATH"), "GOPROXY=http://127.0.0.1:1", "GOFLAGS=-mod=mod")
	if err == nil || !strings.Contains(out, "cannot reach the Go module proxy") {
		t.Fatalf("with an unreachable proxy: err=%v, output:\n%s\nwant a failure naming the proxy", err, out)
	}
	if d := time.Since(began); d > 30*time.Second {
		t.Errorf("took %s to report an unreachable proxy; the probe is bounded at 20 s", d)
	}
}
