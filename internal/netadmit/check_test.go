package netadmit

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
)

func subnet(name, vpc, cidr, cluster string) networkv1alpha1.Subnet {
	return networkv1alpha1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: networkv1alpha1.SubnetSpec{VPC: vpc, CIDR: cidr, Cluster: cluster}}
}

func TestCheckSubnet(t *testing.T) {
	vpc := &networkv1alpha1.VPC{ObjectMeta: metav1.ObjectMeta{Name: "blue"}, Spec: networkv1alpha1.VPCSpec{CIDR: "10.1.0.0/16"}}
	fromParent := vpc.DeepCopy()
	fromParent.Labels = map[string]string{labelFromParent: "true"}
	stored := []networkv1alpha1.Subnet{
		subnet("blue-a", "blue", "10.1.1.0/24", "a"),
		subnet("red-a", "red", "10.1.2.0/24", "a"), // another VPC: may overlap
	}
	for _, tc := range []struct {
		name    string
		s       networkv1alpha1.Subnet
		vpc     *networkv1alpha1.VPC
		known   bool
		wantErr string // "" = accepted
	}{
		{"inside, no overlap", subnet("blue-b", "blue", "10.1.2.0/24", "b"), vpc, true, ""},
		{"the whole VPC", subnet("blue-all", "blue", "10.1.0.0/16", "b"), vpc, true, "overlaps subnet blue-a (10.1.1.0/24, cluster a)"},
		{"update of itself", subnet("blue-a", "blue", "10.1.1.0/24", "a"), vpc, true, ""},
		{"outside", subnet("blue-x", "blue", "10.2.0.0/24", "b"), vpc, true, "10.2.0.0/24 is outside VPC blue (10.1.0.0/16)"},
		{"larger than the VPC", subnet("blue-x", "blue", "10.0.0.0/8", "b"), vpc, true, "is outside VPC blue"},
		{"overlap inside", subnet("blue-c", "blue", "10.1.1.128/25", "b"), vpc, true, "overlaps subnet blue-a"},
		{"no VPC", subnet("green-a", "green", "10.1.1.0/24", "a"), nil, true, `VPC "green" not found: create the VPC first`},
		{"no cluster named", subnet("blue-d", "blue", "10.1.3.0/24", ""), vpc, false, "spec.cluster must name the cluster"},
		{"unknown cluster", subnet("blue-d", "blue", "10.1.3.0/24", "mars"), vpc, false, `cluster "mars" is not in the tree`},
		{"bad cidr", subnet("blue-d", "blue", "10.1.3.0", "a"), vpc, true, "is not a prefix"},
		{"in a VPC from the parent", subnet("blue-e", "blue", "10.1.4.0/24", "a"), fromParent, true, "VPC blue was created above this cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckSubnet(&tc.s, tc.vpc, stored, tc.known)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("accepted, want %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q does not say %q", err, tc.wantErr)
			}
		})
	}
}
