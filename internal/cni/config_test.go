package cni_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/fornax-edge/fornax/internal/cni"
	"github.com/fornax-edge/fornax/internal/netplane"
)

// codeOf is the CNI error code of err, or 0 if err is not a *types.Error.
func codeOf(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		json     string
		wantCode uint // 0: accepted
		wantMsg  string
		check    func(t *testing.T, c *cni.Config)
	}{
		{
			name: "defaults",
			json: `{"cniVersion":"1.1.0","name":"fornax","type":"fornax-cni","kubeconfig":"/etc/fornax/kubeconfig"}`,
			check: func(t *testing.T, c *cni.Config) {
				if c.Name != "fornax" || c.CNIVersion != "1.1.0" || c.Kubeconfig != "/etc/fornax/kubeconfig" ||
					c.DataDir != cni.DefaultDataDir || c.RouterPrefix != netplane.DefaultPrefix {
					t.Errorf("config %+v", c)
				}
			},
		},
		{
			name: "Fornax's fields",
			json: `{"cniVersion":"1.0.0","name":"n","type":"fornax-cni","kubeconfig":"k","dataDir":"/tmp/ipam","routerPrefix":"site1"}`,
			check: func(t *testing.T, c *cni.Config) {
				if c.DataDir != "/tmp/ipam" || c.RouterPrefix != "site1" {
					t.Errorf("config %+v", c)
				}
			},
		},
		{
			name: "prevResult",
			json: `{"cniVersion":"1.0.0","name":"n","type":"fornax-cni","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.1.1.2/24","gateway":"10.1.1.1"}]}}`,
			check: func(t *testing.T, c *cni.Config) {
				if c.PrevResult == nil {
					t.Error("prevResult not parsed")
				}
			},
		},
		{name: "not JSON", json: `{"name":`, wantCode: types.ErrDecodingFailure, wantMsg: "decoding the network configuration"},
		{name: "an ipam section", json: `{"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local"}}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: "remove the ipam section"},
		{name: "a prefix with a slash", json: `{"cniVersion":"1.0.0","name":"n","routerPrefix":"a/b"}`, wantCode: types.ErrInvalidNetworkConfig, wantMsg: "routerPrefix"},
		{name: "a broken prevResult", json: `{"cniVersion":"1.0.0","name":"n","prevResult":{"cniVersion":"1.0.0","ips":"x"}}`, wantCode: types.ErrDecodingFailure, wantMsg: "prevResult"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := cni.ParseConfig([]byte(tc.json))
			if tc.wantCode != 0 {
				if codeOf(err) != tc.wantCode || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("error %v (code %d), want code %d with %q", err, codeOf(err), tc.wantCode, tc.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args          string
		wantNamespace string
		wantName      string
		wantCode      uint
	}{
		{"K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0", "shop", "web-0", 0},
		{"IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u", "shop", "web-0", 0},
		// Runtimes add keys of their own; they are not an error.
		{"K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;SOMETHING_ELSE=1", "shop", "web-0", 0},
		{"", "", "", types.ErrInvalidEnvironmentVariables},
		{"K8S_POD_NAMESPACE=shop", "", "", types.ErrInvalidEnvironmentVariables},
		{"K8S_POD_NAMESPACE", "", "", types.ErrInvalidEnvironmentVariables},
	} {
		a, err := cni.ParseArgs(tc.args)
		var ns, name string
		if err == nil {
			ns, name, err = a.Pod()
		}
		if tc.wantCode != 0 {
			if codeOf(err) != tc.wantCode {
				t.Errorf("%q: error %v (code %d), want code %d", tc.args, err, codeOf(err), tc.wantCode)
			}
			continue
		}
		if err != nil || ns != tc.wantNamespace || name != tc.wantName {
			t.Errorf("%q: pod %s/%s, %v; want %s/%s", tc.args, ns, name, err, tc.wantNamespace, tc.wantName)
		}
	}
	_, _, err := (&cni.Args{}).Pod()
	if err == nil || !strings.Contains(err.Error(), "K8S_POD_NAMESPACE and K8S_POD_NAME") {
		t.Errorf("error for no pod %v", err)
	}
}
