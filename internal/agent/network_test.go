package agent

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

func TestGatewayStateOf(t *testing.T) {
	g := &networkv1alpha1.Gateway{
		Spec: networkv1alpha1.GatewaySpec{Cluster: "a", Endpoint: "192.0.2.1", PublicKey: "k"},
		Status: networkv1alpha1.GatewayStatus{VPCs: []string{"blue"}, Subnets: []string{"blue-a1"}, Generation: 4,
			Conditions: []metav1.Condition{{Type: networkv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Message: "fine"}}},
	}
	g.Name = "a"
	want := &linkpb.GatewayState{Endpoint: "192.0.2.1", PublicKey: "k", Vpcs: []string{"blue"}, Subnets: []string{"blue-a1"}, Generation: 4, Ready: true, Message: "fine"}
	if got := gatewayStateOf(g); !proto.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if err := link.ValidateClusterState(&linkpb.ClusterState{Name: "a", Gateway: gatewayStateOf(g)}, "a"); err != nil {
		t.Errorf("the parent refuses the state: %v", err)
	}

	// A long message is cut to what the link carries, still valid UTF-8.
	g.Status.Conditions[0].Message = strings.Repeat("é", link.MaxMessageBytes)
	if got := gatewayStateOf(g); len(got.GetMessage()) > link.MaxMessageBytes || !strings.HasPrefix(got.GetMessage(), "éé") {
		t.Errorf("message of %d bytes", len(got.GetMessage()))
	}

	// Being deleted, or without an endpoint: no gateway to report.
	now := metav1.Now()
	g.DeletionTimestamp = &now
	if got := gatewayStateOf(g); got != nil {
		t.Errorf("a Gateway being deleted is reported: %v", got)
	}
}
