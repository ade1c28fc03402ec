package hub

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
	"github.com/fornax-edge/fornax/internal/placement"
)

func vpc(name, cidr string, vni int32) *networkv1alpha1.VPC {
	v := &networkv1alpha1.VPC{Spec: networkv1alpha1.VPCSpec{CIDR: cidr}, Status: networkv1alpha1.VPCStatus{VNI: vni}}
	v.Name = name
	return v
}

// subnet makes a subnet created age seconds after a fixed time (older
// subnets win overlaps).
func subnet(name, vpc, cidr, cluster string, age int) *networkv1alpha1.Subnet {
	s := &networkv1alpha1.Subnet{Spec: networkv1alpha1.SubnetSpec{VPC: vpc, CIDR: cidr, Cluster: cluster}}
	s.Name = name
	s.CreationTimestamp = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, age, 0, time.UTC))
	return s
}

func gateway(cluster, endpoint string) *networkv1alpha1.Gateway {
	g := &networkv1alpha1.Gateway{Spec: networkv1alpha1.GatewaySpec{Cluster: cluster, Endpoint: endpoint}}
	g.Name = cluster
	return g
}

func vpcKey(n string) string     { return link.ObjectKey(KindVPC, "", n) }
func subnetKey(n string) string  { return link.ObjectKey(KindSubnet, "", n) }
func gatewayKey(n string) string { return link.ObjectKey(KindGateway, "", n) }

// The network of the tests below: root → {eu → {berlin, paris}, us}.
//
//	blue  (VNI 1): blue-berlin (berlin), blue-us (us), blue-root (root),
//	               blue-dup (us, overlaps blue-us, newer: refused)
//	green (VNI 2): green-paris (paris), green-berlin (berlin)
//	red   (no VNI yet): red-us (us)
//	white (VNI 3): no subnets
//	lost-sub: a subnet of a VPC that does not exist
func testNetwork() netWorld {
	return netWorld{
		vpcs: []*networkv1alpha1.VPC{vpc("blue", "10.1.0.0/16", 1), vpc("green", "10.1.0.0/16", 2), vpc("red", "10.9.0.0/16", 0), vpc("white", "10.3.0.0/16", 3)},
		subnets: []*networkv1alpha1.Subnet{
			subnet("blue-berlin", "blue", "10.1.1.0/24", "berlin", 1),
			subnet("blue-us", "blue", "10.1.2.0/24", "us", 2),
			subnet("blue-root", "blue", "10.1.3.0/24", "root", 3),
			subnet("blue-dup", "blue", "10.1.2.0/25", "us", 4),
			subnet("green-paris", "green", "10.1.1.0/24", "paris", 5),
			subnet("green-berlin", "green", "10.1.2.0/24", "berlin", 6),
			subnet("red-us", "red", "10.9.1.0/24", "us", 7),
			subnet("lost-sub", "nowhere", "10.5.1.0/24", "us", 8),
		},
		gateways: []*networkv1alpha1.Gateway{gateway("berlin", "192.0.2.1"), gateway("paris", "192.0.2.2"), gateway("us", "192.0.2.3"),
			gateway("root", "192.0.2.4"), gateway("far", "192.0.2.5")},
	}
}

func TestPlanNetwork(t *testing.T) {
	blueSubnets := []string{subnetKey("blue-berlin"), subnetKey("blue-us"), subnetKey("blue-root")}
	greenSubnets := []string{subnetKey("green-paris"), subnetKey("green-berlin")}
	with := func(targets []string, keys ...string) map[string][]string {
		out := map[string][]string{}
		for _, k := range keys {
			out[k] = targets
		}
		return out
	}
	join := func(ms ...map[string][]string) map[string][]string {
		out := map[string][]string{}
		for _, m := range ms {
			maps.Copy(out, m)
		}
		return out
	}
	tests := []struct {
		name string
		hop  map[string]string
		edit func(*netWorld)
		want netPlan
	}{{
		name: "at the root: each child gets the VPCs its subtree takes part in, their subnets, and the outside gateways",
		hop:  map[string]string{"eu": "eu", "berlin": "eu", "paris": "eu", "us": "us"},
		want: netPlan{
			"eu": join(
				with([]string{"berlin"}, append([]string{vpcKey("blue")}, blueSubnets...)...),
				with([]string{"berlin", "paris"}, append([]string{vpcKey("green")}, greenSubnets...)...),
				// us and root share blue with berlin; berlin and paris are inside.
				with([]string{"berlin"}, gatewayKey("us"), gatewayKey("root")),
			),
			"us": join(
				with([]string{"us"}, append([]string{vpcKey("blue")}, blueSubnets...)...),
				with([]string{"us"}, gatewayKey("berlin"), gatewayKey("root")),
			),
		},
	}, {
		name: "at a middle cluster: the same rule, one level down",
		hop:  map[string]string{"berlin": "berlin", "paris": "paris"},
		edit: func(w *netWorld) { w.gateways = append(w.gateways, gateway("eu", "192.0.2.6")) },
		want: netPlan{
			"berlin": join(
				with([]string{"berlin"}, append([]string{vpcKey("blue"), vpcKey("green")}, append(blueSubnets, greenSubnets...)...)...),
				with([]string{"berlin"}, gatewayKey("us"), gatewayKey("root"), gatewayKey("paris")),
			),
			"paris": join(
				with([]string{"paris"}, append([]string{vpcKey("green")}, greenSubnets...)...),
				with([]string{"paris"}, gatewayKey("berlin")),
			),
		},
	}, {
		name: "a cluster without a gateway yet: its subnets travel, no Gateway for it",
		hop:  map[string]string{"eu": "eu", "berlin": "eu", "paris": "eu", "us": "us"},
		edit: func(w *netWorld) { w.gateways = w.gateways[:1] }, // berlin's only
		want: netPlan{
			"eu": join(
				with([]string{"berlin"}, append([]string{vpcKey("blue")}, blueSubnets...)...),
				with([]string{"berlin", "paris"}, append([]string{vpcKey("green")}, greenSubnets...)...),
			),
			"us": join(
				with([]string{"us"}, append([]string{vpcKey("blue")}, blueSubnets...)...),
				with([]string{"us"}, gatewayKey("berlin")),
			),
		},
	}, {
		name: "a VPC given its VNI goes down with its subnets",
		hop:  map[string]string{"us": "us"},
		edit: func(w *netWorld) { w.vpcs[2].Status.VNI = 9 },
		want: netPlan{
			"us": join(
				with([]string{"us"}, append([]string{vpcKey("blue"), vpcKey("red"), subnetKey("red-us")}, blueSubnets...)...),
				with([]string{"us"}, gatewayKey("berlin"), gatewayKey("root")),
			),
		},
	}, {
		name: "no child: nothing to send",
		hop:  map[string]string{},
		want: netPlan{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := testNetwork()
			w.hop = tt.hop
			if tt.edit != nil {
				tt.edit(&w)
			}
			got := planNetwork(w)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("plan %v\nwant %v", got, tt.want)
				for child := range mergeKeys(got, tt.want) {
					for key := range mergeKeys(got[child], tt.want[child]) {
						if !slices.Equal(got[child][key], tt.want[child][key]) {
							t.Errorf("child %s, %s: targets %v, want %v", child, key, got[child][key], tt.want[child][key])
						}
					}
				}
			}
		})
	}
}

func mergeKeys[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func TestAcceptSubnets(t *testing.T) {
	w := testNetwork()
	w.subnets = append(w.subnets,
		subnet("outside", "blue", "10.2.0.0/24", "us", 9),
		subnet("too-big", "blue", "10.0.0.0/8", "us", 10),
		subnet("not-network", "blue", "10.1.9.1/24", "us", 11),
		subnet("no-owner", "blue", "10.1.10.0/24", "", 12),
	)
	accepted, rejected := acceptSubnets(w.vpcs, w.subnets)
	var names []string
	for _, s := range accepted {
		names = append(names, s.Name)
	}
	if want := []string{"blue-berlin", "blue-us", "blue-root", "green-paris", "green-berlin", "red-us"}; !slices.Equal(names, want) {
		t.Errorf("accepted %v, want %v (oldest first)", names, want)
	}
	for name, want := range map[string]string{
		"blue-dup":    "CIDR 10.1.2.0/25 overlaps subnet blue-us (10.1.2.0/24) of VPC blue",
		"lost-sub":    "VPC nowhere does not exist",
		"outside":     "CIDR 10.2.0.0/24 is outside VPC blue (10.1.0.0/16)",
		"too-big":     "CIDR 10.0.0.0/8 is outside VPC blue (10.1.0.0/16)",
		"not-network": `CIDR "10.1.9.1/24" is not an IPv4 network address`,
		"no-owner":    "names no owning cluster",
	} {
		if !strings.Contains(rejected[name], want) {
			t.Errorf("subnet %s: rejected with %q, want %q", name, rejected[name], want)
		}
	}
	if len(rejected) != 6 {
		t.Errorf("rejected %v, want 6 subnets", rejected)
	}
}

// A middle cluster holds its parent's VPCs and subnets and may create its
// own; a subnet of its own in a parent's VPC is refused: the parent, and so
// the VPC's clusters elsewhere, would never hear of it.
func TestAcceptSubnetsAtAMiddleCluster(t *testing.T) {
	parentVPC, local := vpc("blue", "10.1.0.0/16", 1), vpc("mine", "10.5.0.0/16", 1<<20)
	parentVPC.Labels = map[string]string{LabelFromParent: "true"}
	sent := subnet("blue-eu", "blue", "10.1.1.0/24", "eu", 1)
	sent.Labels = map[string]string{LabelFromParent: "true"}
	vpcs := []*networkv1alpha1.VPC{parentVPC, local}
	subnets := []*networkv1alpha1.Subnet{sent, subnet("blue-here", "blue", "10.1.2.0/24", "berlin", 2), subnet("mine-berlin", "mine", "10.5.1.0/24", "berlin", 3)}
	accepted, rejected := acceptSubnets(vpcs, subnets)
	var names []string
	for _, s := range accepted {
		names = append(names, s.Name)
	}
	if want := []string{"blue-eu", "mine-berlin"}; !slices.Equal(names, want) {
		t.Errorf("accepted %v, want %v", names, want)
	}
	if want := "VPC blue was created above this cluster"; !strings.Contains(rejected["blue-here"], want) {
		t.Errorf("blue-here rejected with %q, want %q", rejected["blue-here"], want)
	}
}

func TestSmallestFreeVNI(t *testing.T) {
	for _, tt := range []struct {
		taken  []int32
		lo, hi int32
		want   int32
	}{
		{nil, 1, 10, 1},
		{[]int32{1, 2, 3}, 1, 10, 4},
		{[]int32{2, 3}, 1, 10, 1},
		{[]int32{1, 3}, 1, 10, 2},
		{[]int32{1, 2}, 1, 2, 0},
		{[]int32{1, 1 << 20}, 1 << 20, 2<<20 - 1, 1<<20 + 1},
	} {
		taken := map[int32]bool{}
		for _, v := range tt.taken {
			taken[v] = true
		}
		if got := smallestFreeVNI(taken, tt.lo, tt.hi); got != tt.want {
			t.Errorf("taken %v in [%d, %d]: got %d, want %d", tt.taken, tt.lo, tt.hi, got, tt.want)
		}
	}
}

func TestVNIBlocks(t *testing.T) {
	lo, hi, ok := vniBlock(0)
	if !ok || lo != 1 || hi != 1<<20-1 {
		t.Errorf("root: [%d, %d] %t, want [1, %d]", lo, hi, ok, 1<<20-1)
	}
	prevHi := hi
	for d := int32(1); d <= MaxVPCDepth; d++ {
		lo, hi, ok := vniBlock(d)
		if !ok || lo != prevHi+1 || hi < lo || hi > MaxVNI {
			t.Fatalf("depth %d: [%d, %d] %t after %d", d, lo, hi, ok, prevHi)
		}
		prevHi = hi
	}
	if prevHi != MaxVNI {
		t.Errorf("the blocks end at %d, want %d", prevHi, MaxVNI)
	}
	if _, _, ok := vniBlock(MaxVPCDepth + 1); ok {
		t.Errorf("depth %d has a block", MaxVPCDepth+1)
	}
}

func TestHops(t *testing.T) {
	clusters := []placement.Cluster{
		{Name: "eu", Path: []string{"root", "eu"}},
		{Name: "berlin", Path: []string{"root", "eu", "berlin"}},
		{Name: "us", Path: []string{"root", "us"}},
	}
	got := hops([]string{"root"}, clusters)
	if want := map[string]string{"eu": "eu", "berlin": "eu", "us": "us"}; !maps.Equal(got, want) {
		t.Errorf("at the root: %v, want %v", got, want)
	}
	got = hops([]string{"root", "eu"}, clusters)
	if want := map[string]string{"berlin": "berlin"}; !maps.Equal(got, want) {
		t.Errorf("at eu: %v, want %v", got, want)
	}
}

func TestDeriveVPCStatus(t *testing.T) {
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	w := testNetwork()
	ready := func(g *networkv1alpha1.Gateway, vpcs ...string) {
		g.Status.VPCs = vpcs
		meta.SetStatusCondition(&g.Status.Conditions, metav1.Condition{Type: networkv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Programmed"})
	}
	ready(w.gateways[0], "blue", "green") // berlin
	ready(w.gateways[2], "blue")          // us
	st := deriveVPCStatus(w.vpcs[0], 1, w, now)
	if want := []string{"berlin", "root", "us"}; !slices.Equal(st.Clusters, want) {
		t.Errorf("blue's clusters %v, want %v (blue-dup refused)", st.Clusters, want)
	}
	c := meta.FindStatusCondition(st.Conditions, networkv1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonPending || !strings.Contains(c.Message, "root") {
		t.Errorf("blue's Ready %+v, want False Pending naming root", c)
	}
	ready(w.gateways[3], "blue") // root
	st = deriveVPCStatus(w.vpcs[0], 1, w, now)
	if c := meta.FindStatusCondition(st.Conditions, networkv1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("blue's Ready %+v, want True", c)
	}
	st = deriveVPCStatus(w.vpcs[3], 3, w, now)
	if c := meta.FindStatusCondition(st.Conditions, networkv1alpha1.ConditionReady); c == nil || c.Reason != ReasonNoSubnets || len(st.Clusters) != 0 {
		t.Errorf("white: %+v", st)
	}
}

func TestDeriveSubnetStatus(t *testing.T) {
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	w := testNetwork()
	st := deriveSubnetStatus(w.subnets[0], w, now)
	if st.Gateway != "10.1.1.1" {
		t.Errorf("gateway %q, want 10.1.1.1", st.Gateway)
	}
	if !meta.IsStatusConditionTrue(st.Conditions, networkv1alpha1.ConditionAccepted) || meta.IsStatusConditionTrue(st.Conditions, networkv1alpha1.ConditionReady) {
		t.Errorf("blue-berlin before its gateway programs it: %+v", st.Conditions)
	}
	w.gateways[0].Status.Subnets = []string{"blue-berlin"}
	meta.SetStatusCondition(&w.gateways[0].Status.Conditions, metav1.Condition{Type: networkv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Programmed"})
	if st := deriveSubnetStatus(w.subnets[0], w, now); !meta.IsStatusConditionTrue(st.Conditions, networkv1alpha1.ConditionReady) {
		t.Errorf("blue-berlin once programmed: %+v", st.Conditions)
	}
	st = deriveSubnetStatus(w.subnets[3], w, now) // blue-dup
	if c := meta.FindStatusCondition(st.Conditions, networkv1alpha1.ConditionAccepted); c == nil || c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "overlaps subnet blue-us") {
		t.Errorf("blue-dup's Accepted %+v", c)
	}
}

func TestGatewayFromState(t *testing.T) {
	now := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	s := &linkpb.GatewayState{Endpoint: "192.0.2.9", Vpcs: []string{"blue"}, Subnets: []string{"blue-a"}, Generation: 3, Ready: true, Message: "fine"}
	g := gatewayFromState("berlin", "eu", s, nil, now)
	if g.Name != "berlin" || g.Labels[LabelGatewayVia] != "eu" || g.Spec.Endpoint != "192.0.2.9" || g.Spec.Cluster != "berlin" ||
		!slices.Equal(g.Status.Subnets, []string{"blue-a"}) || g.Status.Generation != 3 {
		t.Errorf("materialised %+v", g)
	}
	if c := meta.FindStatusCondition(g.Status.Conditions, networkv1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue || c.Message != "fine" {
		t.Errorf("Ready %+v", c)
	}
	// The same report later keeps the transition time: nothing to write.
	again := gatewayFromState("berlin", "eu", s, g, now.Add(time.Hour))
	if !reflect.DeepEqual(again.Status, g.Status) {
		t.Errorf("an unchanged report changed the status: %+v, was %+v", again.Status, g.Status)
	}
	s.Ready, s.Message = false, "apply failed"
	if c := meta.FindStatusCondition(gatewayFromState("berlin", "eu", s, g, now).Status.Conditions, networkv1alpha1.ConditionReady); c.Status != metav1.ConditionFalse || c.Reason != ReasonNotProgrammed {
		t.Errorf("Ready of a failing gateway %+v", c)
	}
}

func TestNetDigestFollowsPayloadTargetsAndOrigin(t *testing.T) {
	base := netDigest([]byte(`{"a":1}`), []string{"x"}, "root")
	for name, d := range map[string]string{
		"payload": netDigest([]byte(`{"a":2}`), []string{"x"}, "root"),
		"targets": netDigest([]byte(`{"a":1}`), []string{"x", "y"}, "root"),
		"origin":  netDigest([]byte(`{"a":1}`), []string{"x"}, "eu"),
	} {
		if d == base {
			t.Errorf("a change of %s leaves the digest as it was", name)
		}
	}
	if again := netDigest([]byte(`{"a":1}`), []string{"x"}, "root"); again != base {
		t.Errorf("the digest is not stable: %s, %s", again, base)
	}
}

func TestApplyReportTellsWhichGatewaysChanged(t *testing.T) {
	c := &child{states: map[string]*linkpb.ClusterState{}}
	gw := &linkpb.GatewayState{Endpoint: "192.0.2.1", Subnets: []string{"blue-a"}}
	steps := []struct {
		name string
		r    *linkpb.Report
		want []string
	}{
		{"first report", &linkpb.Report{Full: true, Clusters: []*linkpb.ClusterState{{Name: "eu", Gateway: gw}, {Name: "berlin", Parent: "eu"}}}, []string{"eu"}}, // berlin runs no gateway
		{"nothing new", &linkpb.Report{Clusters: []*linkpb.ClusterState{{Name: "eu", Gateway: gw}}}, nil},
		{"a mission changes, not the gateway", &linkpb.Report{Clusters: []*linkpb.ClusterState{{Name: "eu", Gateway: gw,
			Missions: []*linkpb.MissionState{{Namespace: "ns", Name: "m", Phase: "Ready"}}}}}, nil},
		{"a new subnet", &linkpb.Report{Clusters: []*linkpb.ClusterState{{Name: "eu", Gateway: &linkpb.GatewayState{Endpoint: "192.0.2.1", Subnets: []string{"blue-a", "blue-b"}},
			Missions: []*linkpb.MissionState{{Namespace: "ns", Name: "m", Phase: "Ready"}}}}}, []string{"eu"}},
		{"a cluster leaves", &linkpb.Report{Removed: []string{"berlin"}}, []string{"berlin"}},
	}
	for _, s := range steps {
		_, got, err := applyReport(c, s.r)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !slices.Equal(got, s.want) {
			t.Errorf("%s: gateways changed %v, want %v", s.name, got, s.want)
		}
	}
}

func TestReportedGatewayOutOfReachIsUnknown(t *testing.T) {
	h := &Hub{children: map[string]*child{"eu": {states: map[string]*linkpb.ClusterState{
		"eu":     {Name: "eu", Connected: true, Gateway: &linkpb.GatewayState{Endpoint: "192.0.2.1"}},
		"berlin": {Name: "berlin", Parent: "eu", Connected: true},                                                      // runs no gateway
		"paris":  {Name: "paris", Parent: "eu"},                                                                        // out of reach, facts unknown
		"rome":   {Name: "rome", Parent: "eu", Gateway: &linkpb.GatewayState{Endpoint: "192.0.2.3"}, Connected: false}, // out of reach, last facts
	}}}}
	for _, tt := range []struct {
		name, via string
		endpoint  string
		wantKnown bool
	}{
		{"eu", "eu", "192.0.2.1", true},
		{"berlin", "eu", "", true},
		{"paris", "eu", "", false},
		{"rome", "eu", "192.0.2.3", true},
		{"madrid", "eu", "", false},
		{"berlin", "us", "", false}, // another child cannot speak for it
	} {
		gw, known := h.reported(tt.name, tt.via)
		if gw.GetEndpoint() != tt.endpoint || known != tt.wantKnown {
			t.Errorf("%s via %s: endpoint %q, known %t; want %q, %t", tt.name, tt.via, gw.GetEndpoint(), known, tt.endpoint, tt.wantKnown)
		}
	}
}
