package cni

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/fornax-edge/fornax/internal/netplane"
)

// DefaultDataDir is where addresses are recorded unless the network
// configuration says otherwise.
const DefaultDataDir = "/var/lib/fornax/ipam"

// Config is fornax-cni's network configuration: the standard fields and
// Fornax's own.
type Config struct {
	types.PluginConf
	// Kubeconfig is the path of a kubeconfig for this cluster's API server,
	// where ADD reads the pod, its Subnet and the Subnet's VPC. DEL, CHECK
	// and GC do not need it.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// DataDir holds the address allocations (package ipam); default
	// DefaultDataDir.
	DataDir string `json:"dataDir,omitempty"`
	// RouterPrefix names the router namespaces (netplane.RouterNS); default
	// netplane.DefaultPrefix. It must be the gateway's.
	RouterPrefix string `json:"routerPrefix,omitempty"`
}

// ParseConfig decodes a network configuration (the plugin's stdin) and
// applies the defaults. A prevResult (CHECK) is parsed into PrevResult.
func ParseConfig(b []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("decoding the network configuration: %v", err), "")
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.RouterPrefix == "" {
		c.RouterPrefix = netplane.DefaultPrefix
	}
	if c.IPAM.Type != "" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("network %s: fornax-cni allocates addresses from the pod's Subnet itself: remove the ipam section (type %q)", c.Name, c.IPAM.Type), "")
	}
	if strings.ContainsAny(c.RouterPrefix, "/\x00") {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("network %s: routerPrefix %q must not contain '/'", c.Name, c.RouterPrefix), "")
	}
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("network %s: decoding prevResult: %v", c.Name, err), "")
	}
	return c, nil
}

// Args are the CNI_ARGS a Kubernetes container runtime passes.
type Args struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString
	K8S_POD_NAME               types.UnmarshallableString
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString
	K8S_POD_UID                types.UnmarshallableString
}

// ParseArgs decodes CNI_ARGS ("K=V;K2=V2"). Keys it does not know are
// ignored: runtimes add their own.
func ParseArgs(s string) (*Args, error) {
	a := &Args{}
	a.IgnoreUnknown = true
	if err := types.LoadArgs(s, a); err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("decoding CNI_ARGS: %v", err), "")
	}
	return a, nil
}

// Pod is the namespace and name of the pod, or an error saying they are
// missing.
func (a *Args) Pod() (namespace, name string, err error) {
	namespace, name = string(a.K8S_POD_NAMESPACE), string(a.K8S_POD_NAME)
	if namespace == "" || name == "" {
		return "", "", types.NewError(types.ErrInvalidEnvironmentVariables,
			"CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME: fornax-cni attaches Kubernetes pods, and reads their subnet from the pod's annotation", "")
	}
	return namespace, name, nil
}
