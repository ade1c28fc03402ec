package hub

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/netplane"
)

// The root's hub keeps the status of VPCs and Subnets: it allocates each
// VPC's VNI, lists the clusters taking part, gives each subnet its gateway
// address, and says whether the gateways concerned have programmed them
// (from the Gateway objects it materialises from the reports). The reasons
// of their conditions (and of the Ready condition of materialised Gateways):
const (
	// ReasonProgrammed (Ready True): every gateway concerned lists the VPC
	// or subnet as programmed, and is Ready.
	ReasonProgrammed = "Programmed"
	// ReasonPending (Ready False): a gateway concerned has not programmed
	// it yet, or runs no gateway; the message names the clusters.
	ReasonPending = "Pending"
	// ReasonNoSubnets (VPC Ready False): no cluster owns a subnet of it.
	ReasonNoSubnets = "NoSubnets"
	// ReasonNoFreeVNI (VPC Ready False): every VNI is taken.
	ReasonNoFreeVNI = "NoFreeVNI"
	// ReasonAccepted (Subnet Accepted True): inside its VPC, overlapping no
	// other subnet of it.
	ReasonAccepted = "Accepted"
	// ReasonConflict (Subnet Accepted and Ready False): the message names
	// the conflict; no cluster receives the subnet.
	ReasonConflict = "Conflict"
	// ReasonNotProgrammed (materialised Gateway Ready False): the gateway
	// reports that its data plane does not match its desired state.
	ReasonNotProgrammed = "NotProgrammed"
)

// MaxVNI is the largest VXLAN network identifier (24 bits).
const MaxVNI = 1<<24 - 1

// VNIs are unique in the tree without asking the root: a VPC takes its VNI
// from the block of the depth where it was created (the root's block is
// 1 to 2^20-1, depth d's is d·2^20 to (d+1)·2^20-1). Clusters at the same
// depth have disjoint subtrees, and a VPC travels only into the subtree of
// the cluster that created it, so two VPCs that meet on a gateway never
// share a VNI.
const (
	vniBlockBits = 20
	// MaxVPCDepth is the deepest level where VPCs can be created.
	MaxVPCDepth = MaxVNI >> vniBlockBits
)

// vniBlock returns the VNIs a VPC created at depth may take; ok is false
// below MaxVPCDepth.
func vniBlock(depth int32) (lo, hi int32, ok bool) {
	if depth < 0 || depth > MaxVPCDepth {
		return 0, 0, false
	}
	lo, hi = depth<<vniBlockBits, (depth+1)<<vniBlockBits-1
	return max(lo, 1), hi, true
}

// smallestFreeVNI returns the smallest VNI from lo to hi that is not taken,
// or 0 when all are.
func smallestFreeVNI(taken map[int32]bool, lo, hi int32) int32 {
	for v := lo; v <= hi; v++ {
		if !taken[v] {
			return v
		}
	}
	return 0
}

// setupNetworkStatus registers the VPC and Subnet status reconcilers. Every
// hub keeps the status of the VPCs and Subnets created at its cluster (at
// the root, all of them); those from the parent carry the parent's.
func (h *Hub) setupNetworkStatus(mgr manager.Manager) error {
	c := mgr.GetClient()
	// A subnet, or a gateway, changes the status of the VPCs it concerns.
	subnetToVPC := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: o.(*networkv1alpha1.Subnet).Spec.VPC}}}
	})
	gatewayToVPCs := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return requests(vpcsOfCluster(ctx, c, o.GetName()))
	})
	err := ctrl.NewControllerManagedBy(mgr).
		Named("vpc-status").
		For(&networkv1alpha1.VPC{}).
		Watches(&networkv1alpha1.Subnet{}, subnetToVPC).
		Watches(&networkv1alpha1.Gateway{}, gatewayToVPCs).
		Complete(reconcile.Func(h.reconcileVPCStatus))
	if err != nil {
		return fmt.Errorf("setting up the VPC status: %w", err)
	}
	// A subnet's acceptance depends on its VPC and the VPC's other subnets;
	// its readiness on its owner's gateway.
	vpcToSubnets := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return requests(subnetsOf(ctx, c, func(s *networkv1alpha1.Subnet) bool { return s.Spec.VPC == o.GetName() }))
	})
	siblings := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		vpc := o.(*networkv1alpha1.Subnet).Spec.VPC
		return requests(append(subnetsOf(ctx, c, func(s *networkv1alpha1.Subnet) bool { return s.Spec.VPC == vpc }), o.GetName()))
	})
	gatewayToSubnets := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return requests(subnetsOf(ctx, c, func(s *networkv1alpha1.Subnet) bool { return s.Spec.Cluster == o.GetName() }))
	})
	err = ctrl.NewControllerManagedBy(mgr).
		Named("subnet-status").
		Watches(&networkv1alpha1.Subnet{}, siblings).
		Watches(&networkv1alpha1.VPC{}, vpcToSubnets).
		Watches(&networkv1alpha1.Gateway{}, gatewayToSubnets).
		Complete(reconcile.Func(h.reconcileSubnetStatus))
	if err != nil {
		return fmt.Errorf("setting up the Subnet status: %w", err)
	}
	return nil
}

func requests(names []string) []reconcile.Request {
	slices.Sort(names)
	names = slices.Compact(names)
	out := make([]reconcile.Request, 0, len(names))
	for _, n := range names {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: n}})
	}
	return out
}

// subnetsOf names the subnets that match.
func subnetsOf(ctx context.Context, c client.Reader, match func(*networkv1alpha1.Subnet) bool) []string {
	list := &networkv1alpha1.SubnetList{}
	if err := c.List(ctx, list); err != nil {
		return nil
	}
	var out []string
	for i := range list.Items {
		if match(&list.Items[i]) {
			out = append(out, list.Items[i].Name)
		}
	}
	return out
}

// vpcsOfCluster names the VPCs a cluster owns a subnet of.
func vpcsOfCluster(ctx context.Context, c client.Reader, cluster string) []string {
	list := &networkv1alpha1.SubnetList{}
	if err := c.List(ctx, list); err != nil {
		return nil
	}
	var out []string
	for _, s := range list.Items {
		if s.Spec.Cluster == cluster {
			out = append(out, s.Spec.VPC)
		}
	}
	return out
}

// reconcileVPCStatus keeps one VPC's status: its VNI (allocated once, never
// changed), the clusters owning its subnets, and whether their gateways
// have programmed it.
func (h *Hub) reconcileVPCStatus(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	vpc := &networkv1alpha1.VPC{}
	if err := h.client.Get(ctx, req.NamespacedName, vpc); err != nil {
		if apierrors.IsNotFound(err) {
			h.forgetVNI(req.Name)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	if vpc.DeletionTimestamp != nil || vpc.Labels[LabelFromParent] == "true" {
		return reconcile.Result{}, nil // its VNI stays taken until it is gone everywhere; the parent keeps its status
	}
	w, err := h.netObjects(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	vni := vpc.Status.VNI
	if vni == 0 && strings.HasPrefix(h.path(), "?/") {
		// The block depends on the depth, which the parent states.
		return reconcile.Result{RequeueAfter: 2 * time.Second}, nil
	}
	lo, hi, ok := vniBlock(h.depth())
	if vni == 0 && ok {
		vni = smallestFreeVNI(h.takenVNIs(w.vpcs, vpc.Name), lo, hi)
	}
	desired := deriveVPCStatus(vpc, vni, w, time.Now())
	if !ok {
		meta.SetStatusCondition(&desired.Conditions, metav1.Condition{Type: networkv1alpha1.ConditionReady, Status: metav1.ConditionFalse,
			Reason: ReasonNoFreeVNI, ObservedGeneration: vpc.Generation, LastTransitionTime: metav1.NewTime(time.Now().Truncate(time.Second)),
			Message: fmt.Sprintf("VPCs can be created at depth %d at most; this cluster is at depth %d: create it higher up", MaxVPCDepth, h.depth())})
	}
	if equality.Semantic.DeepEqual(desired, vpc.Status) {
		return reconcile.Result{}, nil
	}
	before := vpc.Status.Conditions
	vpc.Status = desired
	// An update, not a patch: it fails if the VPC changed since it was read,
	// so a VNI is never written over another one.
	if err := h.client.Status().Update(ctx, vpc); err != nil {
		return requeueOnConflict(fmt.Errorf("updating status of VPC %s: %w", vpc.Name, err))
	}
	if vni != 0 {
		h.rememberVNI(vpc.Name, vni)
	}
	statusWrites.Inc()
	h.record(vpc, conditionEvents(before, desired.Conditions, networkv1alpha1.ConditionReady))
	return reconcile.Result{}, nil
}

// takenVNIs returns the VNIs of every VPC but one, as the cache shows them
// and as this hub wrote them (a write the cache has not seen yet counts).
func (h *Hub) takenVNIs(vpcs []*networkv1alpha1.VPC, except string) map[int32]bool {
	taken := map[int32]bool{}
	for _, v := range vpcs {
		if v.Name != except && v.Status.VNI > 0 {
			taken[v.Status.VNI] = true
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, vni := range h.vnis {
		if name != except {
			taken[vni] = true
		}
	}
	return taken
}

func (h *Hub) rememberVNI(vpc string, vni int32) {
	h.mu.Lock()
	h.vnis[vpc] = vni
	h.mu.Unlock()
}

func (h *Hub) forgetVNI(vpc string) {
	h.mu.Lock()
	delete(h.vnis, vpc)
	h.mu.Unlock()
}

// deriveVPCStatus computes a VPC's status. It is pure: the same inputs give
// the same status, so an unchanged VPC is not written.
func deriveVPCStatus(vpc *networkv1alpha1.VPC, vni int32, w netWorld, now time.Time) networkv1alpha1.VPCStatus {
	st := networkv1alpha1.VPCStatus{VNI: vni, ObservedGeneration: vpc.Generation, Conditions: vpc.Status.DeepCopy().Conditions}
	accepted, _ := acceptSubnets(w.vpcs, w.subnets)
	for _, s := range accepted {
		if s.Spec.VPC == vpc.Name && s.DeletionTimestamp == nil && !slices.Contains(st.Clusters, s.Spec.Cluster) {
			st.Clusters = append(st.Clusters, s.Spec.Cluster)
		}
	}
	slices.Sort(st.Clusters)
	cond := metav1.Condition{Type: networkv1alpha1.ConditionReady, ObservedGeneration: vpc.Generation, LastTransitionTime: metav1.NewTime(now.Truncate(time.Second))}
	var pending []string
	for _, c := range st.Clusters {
		if !gatewayServes(w.gateways, c, func(g *networkv1alpha1.Gateway) []string { return g.Status.VPCs }, vpc.Name) {
			pending = append(pending, c)
		}
	}
	switch {
	case vni == 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonNoFreeVNI, fmt.Sprintf("every VNI from 1 to %d is taken: delete unused VPCs", MaxVNI)
	case len(st.Clusters) == 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonNoSubnets, "no cluster owns a subnet of the VPC yet"
	case len(pending) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonPending
		cond.Message = fmt.Sprintf("waiting for the gateways of %s to program it", strings.Join(pending, ", "))
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonProgrammed
		cond.Message = fmt.Sprintf("programmed by the gateways of %d clusters", len(st.Clusters))
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}

// gatewayServes tells whether a cluster's gateway is Ready and lists name
// among what it serves.
func gatewayServes(gateways []*networkv1alpha1.Gateway, cluster string, served func(*networkv1alpha1.Gateway) []string, name string) bool {
	for _, g := range gateways {
		if g.Name == cluster {
			return meta.IsStatusConditionTrue(g.Status.Conditions, networkv1alpha1.ConditionReady) && slices.Contains(served(g), name)
		}
	}
	return false
}

// reconcileSubnetStatus keeps one subnet's status: its gateway address,
// whether it is accepted (acceptSubnets), and whether its owner's gateway
// has programmed it.
func (h *Hub) reconcileSubnetStatus(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	s := &networkv1alpha1.Subnet{}
	if err := h.client.Get(ctx, req.NamespacedName, s); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if s.DeletionTimestamp != nil || s.Labels[LabelFromParent] == "true" {
		return reconcile.Result{}, nil // the parent keeps the status of what it sent
	}
	w, err := h.netObjects(ctx)
	if err != nil {
		return reconcile.Result{}, err
	}
	desired := deriveSubnetStatus(s, w, time.Now())
	if equality.Semantic.DeepEqual(desired, s.Status) {
		return reconcile.Result{}, nil
	}
	before := s.Status.Conditions
	patch := client.MergeFrom(s.DeepCopy())
	s.Status = desired
	if err := h.client.Status().Patch(ctx, s, patch); err != nil {
		return requeueOnConflict(fmt.Errorf("updating status of Subnet %s: %w", s.Name, err))
	}
	statusWrites.Inc()
	h.record(s, conditionEvents(before, desired.Conditions, networkv1alpha1.ConditionAccepted, networkv1alpha1.ConditionReady))
	return reconcile.Result{}, nil
}

// deriveSubnetStatus computes a subnet's status. It is pure.
func deriveSubnetStatus(s *networkv1alpha1.Subnet, w netWorld, now time.Time) networkv1alpha1.SubnetStatus {
	st := networkv1alpha1.SubnetStatus{Allocated: s.Status.Allocated, ObservedGeneration: s.Generation, Conditions: s.Status.DeepCopy().Conditions}
	if cidr, err := netip.ParsePrefix(s.Spec.CIDR); err == nil && cidr.Addr().Is4() {
		st.Gateway = netplane.GatewayAddr(cidr).String()
	}
	at := metav1.NewTime(now.Truncate(time.Second))
	_, rejected := acceptSubnets(w.vpcs, w.subnets)
	accepted := metav1.Condition{Type: networkv1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: ReasonAccepted,
		Message: "inside its VPC and overlapping no other subnet of it", ObservedGeneration: s.Generation, LastTransitionTime: at}
	ready := metav1.Condition{Type: networkv1alpha1.ConditionReady, ObservedGeneration: s.Generation, LastTransitionTime: at}
	switch why, bad := rejected[s.Name]; {
	case bad:
		accepted.Status, accepted.Reason, accepted.Message = metav1.ConditionFalse, ReasonConflict, why+": no cluster receives it"
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ReasonConflict, why
	case gatewayServes(w.gateways, s.Spec.Cluster, func(g *networkv1alpha1.Gateway) []string { return g.Status.Subnets }, s.Name):
		ready.Status, ready.Reason, ready.Message = metav1.ConditionTrue, ReasonProgrammed, "programmed by the gateway of "+s.Spec.Cluster
	default:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ReasonPending, "waiting for the gateway of "+s.Spec.Cluster+" to program it"
	}
	meta.SetStatusCondition(&st.Conditions, accepted)
	meta.SetStatusCondition(&st.Conditions, ready)
	return st
}
