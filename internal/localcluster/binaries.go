package localcluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Binary names the harness runs, as `make tools` installs them.
const (
	BinEtcd                  = "etcd"
	BinKine                  = "kine"
	BinKubeAPIServer         = "kube-apiserver"
	BinKubeControllerManager = "kube-controller-manager"
	BinKubeScheduler         = "kube-scheduler"
	BinKwok                  = "kwok"
	BinKubectl               = "kubectl"
	// KwokStages is the kwok Stage configuration `make tools` assembles from
	// the pinned kwok module: node initialisation, node heartbeat with lease,
	// pod ready, pod complete and pod delete.
	KwokStages = "kwok-stages.yaml"
)

// modulePath identifies this repository's go.mod when looking for bin/.
const modulePath = "github.com/fornax-edge/fornax"

// EnvBinDir overrides where the harness looks for the pinned binaries.
const EnvBinDir = "FORNAX_BIN"

// FindBinDir returns the directory holding the pinned binaries: $FORNAX_BIN if
// set; else bin/ of the Fornax checkout containing the working directory; else
// the directory of the running executable (an installed fornaxctl next to them).
func FindBinDir() (string, error) {
	if d := os.Getenv(EnvBinDir); d != "" {
		return filepath.Abs(d)
	}
	if wd, err := os.Getwd(); err == nil {
		if root, ok := findModuleRoot(wd); ok {
			return filepath.Join(root, "bin"), nil
		}
	}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		if _, err := os.Stat(filepath.Join(dir, BinKubeAPIServer)); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("cannot find the pinned Kubernetes binaries: run inside the Fornax checkout after `make tools`, or set " + EnvBinDir + " to their directory")
}

// findModuleRoot walks up from dir to the directory whose go.mod declares the
// Fornax module.
func findModuleRoot(dir string) (string, bool) {
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if strings.TrimSpace(sc.Text()) == "module "+modulePath {
					f.Close()
					return dir, true
				}
			}
			f.Close()
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// checkBinaries returns a clear error naming the first missing binary.
func checkBinaries(binDir string, names ...string) error {
	for _, n := range names {
		p := filepath.Join(binDir, n)
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%s not found in %s: run `make tools` first (it builds the pinned binaries from source) or set %s", n, binDir, EnvBinDir)
		}
		if !strings.HasSuffix(n, ".yaml") && st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not executable: run `make tools` again", p)
		}
	}
	return nil
}
