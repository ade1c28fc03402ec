package cni_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fornax-edge/fornax/internal/cni"
)

// TestInstall installs the plugin into a fake host layout, checks that a
// runtime's library reads the configuration and client-go the kubeconfig,
// and that a rotated token is copied again.
func TestInstall(t *testing.T) {
	dir := t.TempDir()
	bin, conf, sa := filepath.Join(dir, "opt/cni/bin"), filepath.Join(dir, "etc/cni/net.d"), filepath.Join(dir, "sa")
	for _, d := range []string{bin, conf, sa} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self := filepath.Join(dir, "self")
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(self, "#!/bin/true\n")
	write(filepath.Join(sa, "ca.crt"), "not really a CA")
	write(filepath.Join(sa, "token"), "token-1")
	o := cni.InstallOptions{Self: self, BinDir: bin, ConfDir: conf, HostConfDir: conf, Server: "https://10.96.0.1:443",
		CAFile: filepath.Join(sa, "ca.crt"), TokenFile: filepath.Join(sa, "token")}
	if err := cni.Install(o); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(bin, cni.PluginName)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("plugin binary: %v, %v", fi, err)
	}
	list, err := libcni.ConfListFromFile(filepath.Join(conf, cni.DefaultConfName))
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != "fornax" || len(list.Plugins) != 1 || list.Plugins[0].Network.Type != cni.PluginName {
		t.Fatalf("configuration: %+v", list)
	}
	pc, err := cni.ParseConfig(list.Plugins[0].Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if pc.Kubeconfig != filepath.Join(conf, cni.KubeconfigFileName) || pc.RouterPrefix == "" || pc.DataDir != cni.DefaultDataDir {
		t.Errorf("plugin configuration: %+v", pc)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", pc.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != o.Server || cfg.BearerTokenFile != filepath.Join(conf, cni.TokenFileName) || string(cfg.CAData) != "not really a CA" {
		t.Errorf("kubeconfig: host %s, token file %s, CA %q", cfg.Host, cfg.BearerTokenFile, cfg.CAData)
	}
	if changed, err := cni.SyncToken(o); err != nil || changed {
		t.Errorf("an unchanged token: changed %t, %v", changed, err)
	}
	write(filepath.Join(sa, "token"), "token-2")
	if changed, err := cni.SyncToken(o); err != nil || !changed {
		t.Errorf("a rotated token: changed %t, %v", changed, err)
	}
	if got, _ := os.ReadFile(filepath.Join(conf, cni.TokenFileName)); string(got) != "token-2" {
		t.Errorf("token file holds %q", got)
	}
	// Installing again (a restarted pod) changes nothing that works.
	if err := cni.Install(o); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(conf)
	if len(entries) != 3 {
		t.Errorf("configuration directory holds %d files, want 3 (no temporary files left)", len(entries))
	}
}
