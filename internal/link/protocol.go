package link

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// ProtocolVersion is the newest protocol version this build speaks; see the
// history in the package documentation.
const ProtocolVersion = 1

// MinProtocolVersion is the oldest version this build still accepts.
const MinProtocolVersion = 1

// Limits on what a peer may send. Anything beyond them is a protocol error:
// the stream ends and the other streams carry on.
const (
	// MaxFrameBytes bounds one gRPC message.
	MaxFrameBytes = 4 << 20
	// MaxClustersPerReport bounds the clusters of one report.
	MaxClustersPerReport = 20000
	// MaxLabels bounds the labels of one cluster.
	MaxLabels = 64
	// MaxLabelBytes bounds one label key or value.
	MaxLabelBytes = 317 // a qualified key: 253 of prefix, '/', 63 of name
	// MaxMessageBytes bounds free text such as ClusterSummary.message.
	MaxMessageBytes = 1024
)

// Defaults of the keepalive, reporting and readiness timers.
const (
	KeepaliveTime     = 15 * time.Second
	KeepaliveTimeout  = 5 * time.Second
	ReportInterval    = 10 * time.Second
	HeartbeatInterval = 60 * time.Second
	ReadyGrace        = 40 * time.Second
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidClusterName reports whether s can name a cluster: a DNS-1123 label.
func ValidClusterName(s string) error {
	if len(s) == 0 || len(s) > 63 || !nameRE.MatchString(s) {
		return fmt.Errorf("cluster name %q is not a DNS-1123 label (at most 63 lowercase letters, digits and '-')", s)
	}
	return nil
}

// Negotiate returns the version both sides speak, or an error saying which
// side must be upgraded.
func Negotiate(peer uint32) (uint32, error) {
	if peer < MinProtocolVersion {
		return 0, fmt.Errorf("peer speaks protocol version %d; this fornaxd needs at least %d: upgrade the peer", peer, MinProtocolVersion)
	}
	return min(peer, ProtocolVersion), nil
}

// ValidateHello checks a Hello against the cluster named by the peer's
// certificate.
func ValidateHello(h *linkpb.Hello, certCluster string) error {
	if h == nil {
		return errors.New("the first frame must be a Hello")
	}
	if h.GetCluster() != certCluster {
		return fmt.Errorf("the Hello names cluster %q but the client certificate is for %q: a cluster may only speak for itself", h.GetCluster(), certCluster)
	}
	if len(h.GetHave()) > MaxClustersPerReport*10 {
		return fmt.Errorf("the Hello lists %d objects, more than %d", len(h.GetHave()), MaxClustersPerReport*10)
	}
	if d := h.GetHaveDigests(); len(d) > 0 && len(d) != HaveBuckets*HaveDigestBytes {
		return fmt.Errorf("the Hello's have_digests has %d bytes, not %d", len(d), HaveBuckets*HaveDigestBytes)
	}
	if len(h.GetHaveDigests()) > 0 && len(h.GetHave()) > 0 {
		return errors.New("the Hello carries both have and have_digests")
	}
	return nil
}

// ValidateReport checks a report's shape and that every cluster it speaks of
// is the child itself or lies below it.
func ValidateReport(r *linkpb.Report, child string) error {
	if r.GetSeq() == 0 {
		return errors.New("report seq must start at 1")
	}
	if n := len(r.GetClusters()); n > MaxClustersPerReport {
		return fmt.Errorf("report carries %d clusters, more than %d", n, MaxClustersPerReport)
	}
	if r.GetFull() && len(r.GetRemoved()) > 0 {
		return errors.New("a full report cannot list removed clusters")
	}
	for _, c := range r.GetClusters() {
		if err := ValidateClusterState(c, child); err != nil {
			return err
		}
	}
	for _, n := range r.GetRemoved() {
		if n == child {
			return fmt.Errorf("cluster %s cannot report itself removed", child)
		}
		if err := ValidClusterName(n); err != nil {
			return fmt.Errorf("removed: %w", err)
		}
	}
	return nil
}

// ValidateClusterState checks one cluster's state reported by child.
func ValidateClusterState(c *linkpb.ClusterState, child string) error {
	if err := ValidClusterName(c.GetName()); err != nil {
		return err
	}
	if c.GetName() == child && c.GetParent() != "" {
		return fmt.Errorf("cluster %s reports a parent for itself", child)
	}
	if c.GetName() != child && c.GetParent() == "" {
		return fmt.Errorf("cluster %s reports cluster %s without its parent", child, c.GetName())
	}
	if len(c.GetLabels()) > MaxLabels {
		return fmt.Errorf("cluster %s has %d labels, more than %d", c.GetName(), len(c.GetLabels()), MaxLabels)
	}
	for k, v := range c.GetLabels() {
		if len(k) == 0 || len(k) > MaxLabelBytes || len(v) > 63 {
			return fmt.Errorf("cluster %s has a label %q of invalid length", c.GetName(), k)
		}
	}
	if len(c.GetMissionsRemoved()) > MaxClustersPerReport {
		return fmt.Errorf("cluster %s reports %d missions removed, more than %d", c.GetName(), len(c.GetMissionsRemoved()), MaxClustersPerReport)
	}
	if len(c.GetMissionsRemoved()) > 0 && !c.GetMissionsDelta() {
		return fmt.Errorf("cluster %s lists removed missions in a full state", c.GetName())
	}
	if len(c.GetMissions()) > MaxClustersPerReport {
		return fmt.Errorf("cluster %s reports %d missions, more than %d", c.GetName(), len(c.GetMissions()), MaxClustersPerReport)
	}
	for _, m := range c.GetMissions() {
		if len(m.GetMessage()) > MaxMessageBytes || len(m.GetResources()) > 256 || len(m.GetName()) > 253 || len(m.GetNamespace()) > 63 {
			return fmt.Errorf("cluster %s reports an oversized state for mission %s/%s", c.GetName(), m.GetNamespace(), m.GetName())
		}
	}
	if err := validateGateway(c); err != nil {
		return err
	}
	if s := c.GetSummary(); s != nil {
		if len(s.GetMessage()) > MaxMessageBytes || len(s.GetKubernetesVersion()) > 128 || len(s.GetDistro()) > 32 {
			return fmt.Errorf("cluster %s has an oversized summary field", c.GetName())
		}
		if s.GetNodesReady() < 0 || s.GetNodesTotal() < 0 || s.GetNodesReady() > s.GetNodesTotal() {
			return fmt.Errorf("cluster %s reports %d of %d nodes ready", c.GetName(), s.GetNodesReady(), s.GetNodesTotal())
		}
		if len(s.GetCapacity()) > MaxLabels || len(s.GetAllocatable()) > MaxLabels {
			return fmt.Errorf("cluster %s reports too many resources", c.GetName())
		}
	}
	return nil
}

// MaxGatewayNames bounds the VPCs and the subnets a gateway reports.
const MaxGatewayNames = 4096

// validateGateway checks a cluster's gateway state: an IPv4 endpoint,
// bounded lists of names and text.
func validateGateway(c *linkpb.ClusterState) error {
	g := c.GetGateway()
	if g == nil {
		return nil
	}
	if a, err := netip.ParseAddr(g.GetEndpoint()); err != nil || !a.Is4() {
		return fmt.Errorf("cluster %s reports a gateway endpoint %q that is not an IPv4 address", c.GetName(), g.GetEndpoint())
	}
	if len(g.GetVpcs()) > MaxGatewayNames || len(g.GetSubnets()) > MaxGatewayNames {
		return fmt.Errorf("cluster %s reports a gateway with %d VPCs and %d subnets, more than %d", c.GetName(), len(g.GetVpcs()), len(g.GetSubnets()), MaxGatewayNames)
	}
	for _, n := range append(slices.Clone(g.GetVpcs()), g.GetSubnets()...) {
		if n == "" || len(n) > 253 {
			return fmt.Errorf("cluster %s reports a gateway VPC or subnet name of invalid length", c.GetName())
		}
	}
	if len(g.GetPublicKey()) > 256 || len(g.GetMessage()) > MaxMessageBytes {
		return fmt.Errorf("cluster %s reports an oversized gateway key or message", c.GetName())
	}
	return nil
}

// ValidateChildFrame checks any frame after the Hello.
func ValidateChildFrame(f *linkpb.ChildFrame, child string) error {
	switch b := f.GetBody().(type) {
	case *linkpb.ChildFrame_Hello:
		return errors.New("a second Hello on one stream")
	case *linkpb.ChildFrame_Report:
		return ValidateReport(b.Report, child)
	case *linkpb.ChildFrame_Heartbeat:
		if len(b.Heartbeat.GetDigest()) > sha256.Size {
			return errors.New("heartbeat digest too long")
		}
		if s := b.Heartbeat.GetOwn(); s != nil {
			return ValidateClusterState(&linkpb.ClusterState{Name: child, Summary: s}, child)
		}
		return nil
	case *linkpb.ChildFrame_Ack:
		return nil
	case *linkpb.ChildFrame_HaveList:
		for _, b := range b.HaveList.GetBuckets() {
			if b >= HaveBuckets {
				return fmt.Errorf("have list: bucket %d out of range", b)
			}
		}
		if len(b.HaveList.GetHave()) > MaxClustersPerReport*10 {
			return fmt.Errorf("have list: %d objects, more than %d", len(b.HaveList.GetHave()), MaxClustersPerReport*10)
		}
		return nil
	case *linkpb.ChildFrame_NameCheck:
		if err := ValidClusterName(b.NameCheck.GetName()); err != nil {
			return fmt.Errorf("name check: %w", err)
		}
		if len(b.NameCheck.GetClusterUid()) > 64 {
			return errors.New("name check: cluster UID too long")
		}
		return nil
	default:
		return errors.New("empty or unknown frame")
	}
}

// Digest summarises a set of cluster states independent of their order, so
// parent and child can compare what they hold with a few bytes. Observation
// times are left out: only facts count.
func Digest(states []*linkpb.ClusterState) []byte {
	sorted := slices.Clone(states)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].GetName() < sorted[j].GetName() })
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for _, s := range sorted {
		c := proto.CloneOf(s)
		c.ObservedUnixMs = 0
		sortMissions(c)
		b, err := opts.Marshal(c)
		if err != nil { // only invalid UTF-8, which Unmarshal already refuses
			b = []byte(s.GetName())
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	return h.Sum(nil)
}

// SameFacts reports whether two states of a cluster say the same, ignoring
// when they were observed.
func SameFacts(a, b *linkpb.ClusterState) bool {
	a2, b2 := proto.CloneOf(a), proto.CloneOf(b)
	a2.ObservedUnixMs, b2.ObservedUnixMs = 0, 0
	sortMissions(a2)
	sortMissions(b2)
	return proto.Equal(a2, b2)
}
