package gateway

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/netplane"
)

func vpc(name string, vni int32) *networkv1alpha1.VPC {
	v := &networkv1alpha1.VPC{Spec: networkv1alpha1.VPCSpec{CIDR: "10.0.0.0/8"}, Status: networkv1alpha1.VPCStatus{VNI: vni}}
	v.Name = name
	return v
}

func subnet(name, vpc, cidr, cluster string, age int) *networkv1alpha1.Subnet {
	s := &networkv1alpha1.Subnet{Spec: networkv1alpha1.SubnetSpec{VPC: vpc, CIDR: cidr, Cluster: cluster}}
	s.Name = name
	s.CreationTimestamp = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, age, 0, time.UTC))
	return s
}

func gw(cluster, endpoint string) *networkv1alpha1.Gateway {
	g := &networkv1alpha1.Gateway{Spec: networkv1alpha1.GatewaySpec{Cluster: cluster, Endpoint: endpoint}}
	g.Name = cluster
	return g
}

func deleting[T interface{ SetDeletionTimestamp(*metav1.Time) }](o T) T {
	now := metav1.Now()
	o.SetDeletionTimestamp(&now)
	return o
}

var (
	me   = netip.MustParseAddr("192.0.2.1")
	cidr = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func TestDesired(t *testing.T) {
	tests := []struct {
		name string
		in   Input
		want Plan
	}{{
		name: "own subnets get bridges, remote ones routes through their owner's gateway",
		in: Input{
			VPCs: []*networkv1alpha1.VPC{vpc("blue", 7), vpc("green", 8)},
			Subnets: []*networkv1alpha1.Subnet{
				subnet("blue-a2", "blue", "10.1.2.0/24", "a", 2), subnet("blue-a1", "blue", "10.1.1.0/24", "a", 1),
				subnet("blue-b1", "blue", "10.1.3.0/24", "b", 3),
				subnet("green-b1", "green", "10.1.1.0/24", "b", 4), // a VPC a has no subnet in: not served
			},
			Gateways: []*networkv1alpha1.Gateway{gw("a", "192.0.2.1"), gw("b", "192.0.2.2")},
		},
		want: Plan{
			Spec: netplane.Spec{VPCs: []netplane.VPC{{Name: "blue", VNI: 7,
				Subnets: []netplane.Subnet{{Name: "blue-a1", CIDR: cidr("10.1.1.0/24")}, {Name: "blue-a2", CIDR: cidr("10.1.2.0/24")}},
				Remote:  []netplane.RemoteSubnet{{Name: "blue-b1", CIDR: cidr("10.1.3.0/24"), Gateway: addr("192.0.2.2")}},
			}}},
			VPCs: []string{"blue"}, Subnets: []string{"blue-a1", "blue-a2"},
			Peers: []Peer{{Cluster: "b", Endpoint: "192.0.2.2", VPCs: []string{"blue"}}},
		},
	}, {
		name: "a remote subnet whose owner's Gateway is not here yet is pending, not routed",
		in: Input{
			VPCs:    []*networkv1alpha1.VPC{vpc("blue", 7)},
			Subnets: []*networkv1alpha1.Subnet{subnet("blue-a1", "blue", "10.1.1.0/24", "a", 1), subnet("blue-c1", "blue", "10.1.4.0/24", "c", 2)},
		},
		want: Plan{
			Spec: netplane.Spec{VPCs: []netplane.VPC{{Name: "blue", VNI: 7, Subnets: []netplane.Subnet{{Name: "blue-a1", CIDR: cidr("10.1.1.0/24")}}}}},
			VPCs: []string{"blue"}, Subnets: []string{"blue-a1"},
			Peers: []Peer{{Cluster: "c", VPCs: []string{"blue"}, Pending: true, Reason: "its Gateway is not known here yet"}},
		},
	}, {
		name: "overlapping VPCs of two tenants are two router namespaces",
		in: Input{
			VPCs: []*networkv1alpha1.VPC{vpc("blue", 7), vpc("green", 8)},
			Subnets: []*networkv1alpha1.Subnet{
				subnet("blue-a1", "blue", "10.1.1.0/24", "a", 1), subnet("green-a1", "green", "10.1.1.0/24", "a", 2),
			},
		},
		want: Plan{
			Spec: netplane.Spec{VPCs: []netplane.VPC{
				{Name: "blue", VNI: 7, Subnets: []netplane.Subnet{{Name: "blue-a1", CIDR: cidr("10.1.1.0/24")}}},
				{Name: "green", VNI: 8, Subnets: []netplane.Subnet{{Name: "green-a1", CIDR: cidr("10.1.1.0/24")}}},
			}},
			VPCs: []string{"blue", "green"}, Subnets: []string{"blue-a1", "green-a1"},
		},
	}, {
		name: "what would make the spec invalid is left out, and said",
		in: Input{
			VPCs: []*networkv1alpha1.VPC{vpc("blue", 7), vpc("dup", 7), vpc("novni", 0)},
			Subnets: []*networkv1alpha1.Subnet{
				subnet("blue-a1", "blue", "10.1.1.0/24", "a", 1),
				subnet("blue-over", "blue", "10.1.1.128/25", "b", 2), // overlaps the older blue-a1
				subnet("blue-bad", "blue", "10.1.5.0/31", "a", 3),
				subnet("blue-self", "blue", "10.1.6.0/24", "s", 4), // its gateway claims this gateway's endpoint
				subnet("dup-a1", "dup", "10.2.1.0/24", "a", 5),
				subnet("novni-a1", "novni", "10.3.1.0/24", "a", 6),
				subnet("nowhere-a1", "nowhere", "10.4.1.0/24", "a", 7),
			},
			Gateways: []*networkv1alpha1.Gateway{gw("b", "192.0.2.2"), gw("s", "192.0.2.1")},
		},
		want: Plan{
			Spec: netplane.Spec{VPCs: []netplane.VPC{{Name: "blue", VNI: 7, Subnets: []netplane.Subnet{{Name: "blue-a1", CIDR: cidr("10.1.1.0/24")}}}}},
			VPCs: []string{"blue"}, Subnets: []string{"blue-a1"},
			Peers: []Peer{{Cluster: "s", VPCs: []string{"blue"}, Pending: true, Reason: "its Gateway's endpoint 192.0.2.1 is this gateway's own"}},
			Problems: []string{
				"VPC dup has VNI 7, as VPC blue does: left out",
				"VPC novni has no VNI yet",
				"VPC nowhere of the local subnets is not in this cluster yet",
				`subnet blue-bad: CIDR "10.1.5.0/31" is not an IPv4 network of at most /30: left out`,
				"subnet blue-over: CIDR 10.1.1.128/25 overlaps subnet blue-a1 (10.1.1.0/24) of VPC blue: left out",
			},
		},
	}, {
		name: "objects being deleted are gone already",
		in: Input{
			VPCs:     []*networkv1alpha1.VPC{vpc("blue", 7), deleting(vpc("old", 9))},
			Subnets:  []*networkv1alpha1.Subnet{subnet("blue-a1", "blue", "10.1.1.0/24", "a", 1), deleting(subnet("blue-b1", "blue", "10.1.3.0/24", "b", 2)), subnet("old-a1", "old", "10.9.1.0/24", "a", 3)},
			Gateways: []*networkv1alpha1.Gateway{gw("b", "192.0.2.2")},
		},
		want: Plan{
			Spec: netplane.Spec{VPCs: []netplane.VPC{{Name: "blue", VNI: 7, Subnets: []netplane.Subnet{{Name: "blue-a1", CIDR: cidr("10.1.1.0/24")}}}}},
			VPCs: []string{"blue"}, Subnets: []string{"blue-a1"},
			Problems: []string{"VPC old of the local subnets is not in this cluster yet"},
		},
	}, {
		name: "no subnet here: nothing to program",
		in:   Input{VPCs: []*networkv1alpha1.VPC{vpc("blue", 7)}, Subnets: []*networkv1alpha1.Subnet{subnet("blue-b1", "blue", "10.1.3.0/24", "b", 1)}},
		want: Plan{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Cluster, tt.in.Prefix, tt.in.Endpoint = "a", "fxtest", me
			tt.want.Spec.Prefix, tt.want.Spec.Underlay = "fxtest", me
			got := Desired(tt.in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Desired:\n got %+v\nwant %+v", got, tt.want)
			}
			if err := netplane.Validate(got.Spec); err != nil {
				t.Errorf("the plan's spec is invalid: %v", err)
			}
		})
	}
}

func TestDeriveStatus(t *testing.T) {
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	spec := networkv1alpha1.GatewaySpec{Cluster: "a", Endpoint: "192.0.2.1"}
	plan := Plan{VPCs: []string{"blue"}, Subnets: []string{"blue-a1"}, Peers: []Peer{
		{Cluster: "b", Endpoint: "192.0.2.2", VPCs: []string{"blue"}},
		{Cluster: "c", VPCs: []string{"blue"}, Pending: true, Reason: "its Gateway is not known here yet"},
	}}
	first := deriveStatus(observation{plan: plan, parentUp: true, spec: spec, now: now})
	if first.Generation != 1 || !slices.Equal(first.Subnets, []string{"blue-a1"}) {
		t.Errorf("first status %+v", first)
	}
	if states := []networkv1alpha1.PeerState{first.Peers[0].State, first.Peers[1].State}; !slices.Equal(states, []networkv1alpha1.PeerState{networkv1alpha1.PeerProgrammed, networkv1alpha1.PeerPending}) {
		t.Errorf("peer states %v", states)
	}
	c := first.Conditions[0]
	if c.Status != metav1.ConditionTrue || c.Reason != ReasonProgrammed || !strings.Contains(c.Message, "pending peers: c (its Gateway is not known here yet)") {
		t.Errorf("Ready %+v", c)
	}

	// The same pass again: nothing changes, the generation stays.
	again := deriveStatus(observation{plan: plan, parentUp: true, spec: spec, previousSpec: spec, previousStatus: first, now: now.Add(time.Minute)})
	if !reflect.DeepEqual(again, first) {
		t.Errorf("an unchanged pass changed the status:\n%+v\n%+v", again, first)
	}

	// A new subnet is a new fact: the generation moves.
	more := plan
	more.Subnets = []string{"blue-a1", "blue-a2"}
	if st := deriveStatus(observation{plan: more, parentUp: true, spec: spec, previousSpec: spec, previousStatus: first, now: now}); st.Generation != 2 {
		t.Errorf("generation %d after a new subnet, want 2", st.Generation)
	}

	// The uplink down: routes kept, peers stale; no new fact.
	st := deriveStatus(observation{plan: plan, parentUp: false, spec: spec, previousSpec: spec, previousStatus: first, now: now})
	if st.Peers[0].State != networkv1alpha1.PeerStale || st.Generation != 1 || !strings.Contains(st.Conditions[0].Message, "last known routes are kept") {
		t.Errorf("with the uplink down: %+v", st)
	}

	// A failed apply: not Ready, with the error.
	st = deriveStatus(observation{plan: plan, applyErr: errTest("no VXLAN for you"), parentUp: true, spec: spec, previousSpec: spec, previousStatus: first, now: now})
	if c := st.Conditions[0]; c.Status != metav1.ConditionFalse || c.Reason != ReasonApplyFailed || c.Message != "no VXLAN for you" || st.Peers[0].State != networkv1alpha1.PeerPending {
		t.Errorf("after a failed apply: %+v", st)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }
