package gateway

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
)

// Reasons of the Gateway's Ready condition.
const (
	// ReasonProgrammed: the data plane matches the plan (peers may still be
	// pending: they are listed).
	ReasonProgrammed = "Programmed"
	// ReasonApplyFailed: applying the plan failed; the message says how.
	ReasonApplyFailed = "ApplyFailed"
)

// maxMessage bounds the condition's message (the API allows 32768; the link
// carries 1024).
const maxMessage = 1024

// observation is what one pass of the gateway saw and did: the input of
// deriveStatus.
type observation struct {
	plan     Plan
	applyErr error
	// parentUp: the link to the parent is up (always, at the root).
	parentUp bool
	// facts of the Gateway as last written: its spec and status.
	previousSpec   networkv1alpha1.GatewaySpec
	previousStatus networkv1alpha1.GatewayStatus
	spec           networkv1alpha1.GatewaySpec
	now            time.Time
}

// deriveStatus computes the gateway's status. It is pure: the same
// observation gives the same status, so a pass that changes nothing writes
// nothing. The generation counts changes to the facts the other gateways
// use (endpoint, key, VPCs, subnets).
func deriveStatus(o observation) networkv1alpha1.GatewayStatus {
	prev := o.previousStatus
	st := networkv1alpha1.GatewayStatus{
		VPCs:       o.plan.VPCs,
		Subnets:    o.plan.Subnets,
		Generation: prev.Generation,
		Conditions: prev.DeepCopy().Conditions,
	}
	if st.Generation == 0 || o.spec.Endpoint != o.previousSpec.Endpoint || o.spec.PublicKey != o.previousSpec.PublicKey ||
		!slices.Equal(st.VPCs, prev.VPCs) || !slices.Equal(st.Subnets, prev.Subnets) {
		st.Generation++
	}
	pending := 0
	for _, p := range o.plan.Peers {
		gp := networkv1alpha1.GatewayPeer{Cluster: p.Cluster, Endpoint: p.Endpoint, VPCs: p.VPCs, State: networkv1alpha1.PeerProgrammed}
		switch {
		case p.Pending || o.applyErr != nil:
			gp.State = networkv1alpha1.PeerPending
			pending++
		case !o.parentUp:
			gp.State = networkv1alpha1.PeerStale
		}
		st.Peers = append(st.Peers, gp)
	}
	cond := metav1.Condition{Type: networkv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonProgrammed,
		LastTransitionTime: metav1.NewTime(o.now.Truncate(time.Second))}
	if o.applyErr != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonApplyFailed, o.applyErr.Error()
	} else {
		cond.Message = summary(o.plan, pending, o.parentUp)
	}
	if len(cond.Message) > maxMessage {
		cond.Message = strings.ToValidUTF8(cond.Message[:maxMessage-3], "") + "..."
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}

// summary says what is programmed, what waits and what was left out.
func summary(p Plan, pending int, parentUp bool) string {
	remote := 0
	for _, v := range p.Spec.VPCs {
		remote += len(v.Remote)
	}
	msg := fmt.Sprintf("%d VPCs, %d local subnets, %d remote subnets programmed", len(p.VPCs), len(p.Subnets), remote)
	if pending > 0 {
		var names []string
		for _, peer := range p.Peers {
			if peer.Pending {
				names = append(names, peer.Cluster+" ("+peer.Reason+")")
			}
		}
		msg += "; pending peers: " + strings.Join(names, ", ")
	}
	if !parentUp {
		msg += "; the link to the parent is down: the last known routes are kept"
	}
	if len(p.Problems) > 0 {
		msg += "; left out: " + strings.Join(p.Problems, "; ")
	}
	return msg
}
