package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/fornax-edge/fornax/internal/netplane"
)

// Installing the plugin on a node: a DaemonSet on the gateway node runs
// 'fornax-cni install', which puts the plugin where the container runtime
// looks for plugins, a network configuration where it looks for
// configurations, and a kubeconfig for the plugin made of the pod's service
// account (whose token it keeps fresh: tokens are rotated).

// The names Install writes.
const (
	PluginName         = "fornax-cni"
	KubeconfigFileName = "fornax-cni.kubeconfig"
	TokenFileName      = "fornax-cni.token"
	// DefaultConfName sorts after the usual primary networks (10-flannel,
	// 10-calico, ...): a runtime uses the first configuration, so the
	// cluster's own network stays primary and pods reach Fornax's through a
	// meta plugin such as Multus (network name "fornax").
	DefaultConfName = "90-fornax.conflist"
)

// InstallOptions say where Install writes and what from.
type InstallOptions struct {
	Self     string // this binary
	BinDir   string // the runtime's plugin directory (host's /opt/cni/bin)
	ConfDir  string // the runtime's configuration directory (host's /etc/cni/net.d)
	ConfName string // the configuration's file name (default DefaultConfName)
	// HostConfDir is ConfDir as the plugin sees it on the host (default
	// /etc/cni/net.d): the kubeconfig names the token by that path.
	HostConfDir  string
	RouterPrefix string // must be the gateway's --gateway-prefix ("" = the default)
	DataDir      string // address allocations ("" = DefaultDataDir)
	// The API server and the service account, as in a pod.
	Server    string
	CAFile    string
	TokenFile string
}

// Install writes the plugin, its kubeconfig and token, and the network
// configuration. Every file is replaced atomically, so a runtime never runs
// half a binary or reads half a configuration.
func Install(o InstallOptions) error {
	if o.ConfName == "" {
		o.ConfName = DefaultConfName
	}
	if o.HostConfDir == "" {
		o.HostConfDir = "/etc/cni/net.d"
	}
	if o.RouterPrefix == "" {
		o.RouterPrefix = netplane.DefaultPrefix
	}
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir
	}
	self, err := os.Open(o.Self)
	if err != nil {
		return fmt.Errorf("reading the plugin binary: %w", err)
	}
	defer func() { _ = self.Close() }()
	bin, err := io.ReadAll(self)
	if err != nil {
		return fmt.Errorf("reading the plugin binary: %w", err)
	}
	if err := writeAtomic(filepath.Join(o.BinDir, PluginName), bin, 0o755); err != nil {
		return err
	}
	if _, err := SyncToken(o); err != nil {
		return err
	}
	ca, err := os.ReadFile(o.CAFile)
	if err != nil {
		return fmt.Errorf("reading the API server's CA: %w", err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: o.Server, CertificateAuthorityData: ca}
	kc.AuthInfos[PluginName] = &clientcmdapi.AuthInfo{TokenFile: filepath.Join(o.HostConfDir, TokenFileName)}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: PluginName}
	kc.CurrentContext = "local"
	raw, err := clientcmd.Write(*kc)
	if err != nil {
		return fmt.Errorf("encoding the plugin's kubeconfig: %w", err)
	}
	if err := writeAtomic(filepath.Join(o.ConfDir, KubeconfigFileName), raw, 0o600); err != nil {
		return err
	}
	conf, err := json.MarshalIndent(map[string]any{
		"cniVersion": "1.1.0",
		"name":       "fornax",
		"plugins": []map[string]any{{
			"type":         PluginName,
			"kubeconfig":   filepath.Join(o.HostConfDir, KubeconfigFileName),
			"routerPrefix": o.RouterPrefix,
			"dataDir":      o.DataDir,
		}},
	}, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(o.ConfDir, o.ConfName), append(conf, '\n'), 0o644)
}

// SyncToken copies the service account's token next to the kubeconfig when
// it changed; the plugin's client reads it again at each invocation.
func SyncToken(o InstallOptions) (bool, error) {
	token, err := os.ReadFile(o.TokenFile)
	if err != nil {
		return false, fmt.Errorf("reading the service account token: %w", err)
	}
	dst := filepath.Join(o.ConfDir, TokenFileName)
	if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, token) {
		return false, nil
	}
	return true, writeAtomic(dst, token, 0o600)
}

// writeAtomic writes a file through a temporary one in the same directory
// and a rename.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
