package cni_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/fornax-edge/fornax/internal/cni"
)

// TestAPIResolver reads placements from a real API server: the happy
// path and every way a pod cannot be placed.
func TestAPIResolver(t *testing.T) {
	cl := apiClient(t)
	createVPC(t, cl, "res-ready", "10.60.0.0/16", 60)
	createVPC(t, cl, "res-unready", "10.61.0.0/16", 0)
	createSubnet(t, cl, "res-ready-a", "res-ready", "10.60.1.0/24")
	createSubnet(t, cl, "res-unready-a", "res-unready", "10.61.1.0/24")
	createSubnet(t, cl, "res-orphan-a", "res-missing", "10.62.1.0/24")
	createPod(t, cl, "res-ok", "res-ready-a")
	createPod(t, cl, "res-plain", "")
	createPod(t, cl, "res-typo", "res-no-such-subnet")
	createPod(t, cl, "res-unready", "res-unready-a")
	createPod(t, cl, "res-orphan", "res-orphan-a")

	r, err := cni.NewAPIResolver(apiServer(t).Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Resolve(t.Context(), "default", "res-ok")
	want := cni.Placement{Subnet: "res-ready-a", CIDR: netip.MustParsePrefix("10.60.1.0/24"), VPC: "res-ready", VNI: 60}
	if err != nil || got != want {
		t.Errorf("Resolve = %+v, %v; want %+v", got, err, want)
	}

	for _, tc := range []struct {
		pod      string
		wantCode uint
		wantMsg  string
	}{
		{"res-plain", cni.ErrNoSubnetAnnotation, "pod default/res-plain has no annotation network.fornax.io/subnet: set it to the name of a Subnet of this cluster"},
		{"res-typo", cni.ErrSubnetNotFound, "subnet res-no-such-subnet, named by pod default/res-typo (annotation network.fornax.io/subnet), is not in this cluster"},
		{"res-unready", cni.ErrVPCNotReady, "VPC res-unready has no VNI yet: the root's hub allocates it; is this cluster connected?"},
		{"res-orphan", cni.ErrVPCNotReady, "VPC res-missing of subnet res-orphan-a is not in this cluster"},
		{"res-nobody", cni.ErrPodNotFound, "pod default/res-nobody is not in the API server"},
	} {
		_, err := r.Resolve(t.Context(), "default", tc.pod)
		if codeOf(err) != tc.wantCode || !strings.Contains(err.Error(), tc.wantMsg) {
			t.Errorf("pod %s: %v (code %d), want code %d with %q", tc.pod, err, codeOf(err), tc.wantCode, tc.wantMsg)
		}
	}

	// No answer is worth a retry; a refusal is not.
	down, err := cni.NewAPIResolverForConfig(&rest.Config{Host: "https://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Resolve(t.Context(), "default", "res-ok"); codeOf(err) != types.ErrTryAgainLater {
		t.Errorf("an unreachable API server: %v (code %d), want code %d", err, codeOf(err), types.ErrTryAgainLater)
	}
	anon := rest.AnonymousClientConfig(apiServer(t).RESTConfig())
	stranger, err := cni.NewAPIResolverForConfig(anon)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stranger.Resolve(t.Context(), "default", "res-ok"); codeOf(err) != cni.ErrAPI || !strings.Contains(err.Error(), "reading pod default/res-ok") {
		t.Errorf("a forbidden read: %v (code %d), want code %d", err, codeOf(err), cni.ErrAPI)
	}
}
