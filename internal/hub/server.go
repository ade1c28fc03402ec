package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	"github.com/fornax-edge/fornax/internal/bootstrap"
	"github.com/fornax-edge/fornax/internal/certs"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

func newTransportCredentials(cfg *tls.Config) credentials.TransportCredentials {
	return credentials.NewTLS(cfg)
}

// server implements the Link gRPC service.
type server struct {
	linkpb.UnimplementedLinkServer
	hub *Hub
}

// peerCluster returns the cluster named by the caller's verified client
// certificate and the certificate itself.
func peerCluster(ctx context.Context) (string, *x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", nil, status.Error(codes.Unauthenticated, "no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", nil, status.Error(codes.Unauthenticated, "a client certificate from this parent's CA is required: join first with 'fornaxctl join'")
	}
	cert := ti.State.VerifiedChains[0][0]
	name, err := certs.ClusterName(cert)
	if err != nil {
		return "", nil, status.Error(codes.Unauthenticated, err.Error())
	}
	return name, cert, nil
}

func serialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// Join admits a cluster: token, name and identity checks, then a certificate.
// Nothing is created at the parent for a refused join.
func (s *server) Join(ctx context.Context, req *linkpb.JoinRequest) (*linkpb.JoinResponse, error) {
	h := s.hub
	log := h.log.With("cluster", req.GetCluster())
	if _, err := link.Negotiate(req.GetProtocolVersion()); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	if err := link.ValidClusterName(req.GetCluster()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error()+": choose another --name")
	}
	if req.GetCluster() == h.opts.Name {
		return nil, status.Errorf(codes.AlreadyExists, "%q is the parent's own name: choose another --name", req.GetCluster())
	}
	if req.GetClusterUid() == "" || len(req.GetClusterUid()) > 64 {
		return nil, status.Error(codes.InvalidArgument, "the join request lacks the cluster's identity (its kube-system namespace UID)")
	}
	if err := validateLabels(req.GetLabels()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if _, err := bootstrap.Check(ctx, h.kube, h.opts.Namespace, req.GetToken(), time.Now()); err != nil {
		joins.WithLabelValues("refused").Inc()
		log.Info("join refused", "reason", err.Error())
		return nil, tokenStatus(err)
	}
	existing := &edgev1alpha1.EdgeCluster{}
	err := h.client.Get(ctx, client.ObjectKey{Name: req.GetCluster()}, existing)
	switch {
	case apierrors.IsNotFound(err):
		existing = nil
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "reading EdgeCluster %s: %v", req.GetCluster(), err)
	case existing.Annotations[AnnotationClusterUID] != req.GetClusterUid():
		joins.WithLabelValues("refused").Inc()
		log.Info("join refused", "reason", "name taken")
		return nil, status.Errorf(codes.AlreadyExists,
			"the name %q is taken by another cluster of this tree: choose another --name, or remove the other with 'fornaxctl remove cluster %s' at the parent",
			req.GetCluster(), req.GetCluster())
	}
	if h.opts.CheckNameUp != nil {
		// Names are unique in the whole tree, not only below this cluster.
		taken, msg, err := h.opts.CheckNameUp(ctx, req.GetCluster(), req.GetClusterUid())
		if err != nil {
			joins.WithLabelValues("refused").Inc()
			return nil, status.Errorf(codes.Unavailable, "cannot confirm that the name %q is free in the tree (%v): try again when this cluster's uplink is up", req.GetCluster(), err)
		}
		if taken {
			joins.WithLabelValues("refused").Inc()
			log.Info("join refused", "reason", msg)
			return nil, status.Errorf(codes.AlreadyExists, "%s: choose another --name", msg)
		}
	}
	cert, err := h.ca.SignClusterCSR(req.GetCsrPem(), req.GetCluster(), h.opts.ClientCertValidity)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := bootstrap.Use(ctx, h.kube, h.opts.Namespace, req.GetToken(), time.Now()); err != nil {
		return nil, tokenStatus(err)
	}
	if err := h.recordJoin(ctx, req, existing, serialHex(cert)); err != nil {
		return nil, status.Errorf(codes.Unavailable, "recording the cluster: %v", err)
	}
	joins.WithLabelValues("accepted").Inc()
	log.Info("cluster joined", "rejoin", existing != nil, "serial", serialHex(cert))
	if existing != nil {
		// The re-joined cluster's open stream uses a revoked certificate:
		// end it, so the cluster reconnects with the new one.
		h.disconnect(req.GetCluster())
	}
	return &linkpb.JoinResponse{CertificatePem: certs.EncodeCertPEM(cert), CaPem: h.ca.CertPEM(), Parent: h.opts.Name}, nil
}

func tokenStatus(err error) error {
	switch {
	case errors.Is(err, bootstrap.ErrMalformed):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, bootstrap.ErrUnknown), errors.Is(err, bootstrap.ErrWrong),
		errors.Is(err, bootstrap.ErrExpired), errors.Is(err, bootstrap.ErrUsedUp):
		return status.Error(codes.Unauthenticated, err.Error())
	default:
		return status.Error(codes.Unavailable, err.Error())
	}
}

func validateLabels(l map[string]string) error {
	if len(l) > link.MaxLabels {
		return fmt.Errorf("%d labels, more than %d", len(l), link.MaxLabels)
	}
	for k, v := range l {
		if strings.HasPrefix(k, edgev1alpha1.GroupName+"/") {
			return fmt.Errorf("label %q: the %s/ prefix is reserved for Fornax's built-in labels", k, edgev1alpha1.GroupName)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("label %s=%q: %s", k, v, strings.Join(errs, "; "))
		}
	}
	return nil
}

// recordJoin creates or updates the child's EdgeCluster with its labels,
// identity and certificate serial.
func (h *Hub) recordJoin(ctx context.Context, req *linkpb.JoinRequest, existing *edgev1alpha1.EdgeCluster, serial string) error {
	labels := map[string]string{}
	for k, v := range req.GetLabels() {
		labels[k] = v
	}
	for k, v := range builtinLabels(req.GetCluster(), h.opts.Name, h.depth()+1, "") {
		labels[k] = v
	}
	if existing == nil {
		ec := &edgev1alpha1.EdgeCluster{ObjectMeta: metav1.ObjectMeta{
			Name:   req.GetCluster(),
			Labels: labels,
			Annotations: map[string]string{
				AnnotationClusterUID:  req.GetClusterUid(),
				AnnotationCertSerials: serial,
			},
		}}
		return h.client.Create(ctx, ec)
	}
	patch := client.MergeFrom(existing.DeepCopy())
	if d := existing.Labels[edgev1alpha1.LabelDistro]; d != "" {
		labels[edgev1alpha1.LabelDistro] = d
	}
	existing.Labels = labels
	existing.Annotations[AnnotationCertSerials] = serial // a re-join revokes older certificates
	return h.client.Patch(ctx, existing, patch)
}

// Renew issues a new certificate to an admitted cluster. The previous one stays
// valid (open streams are not interrupted); older ones are revoked.
func (s *server) Renew(ctx context.Context, req *linkpb.RenewRequest) (*linkpb.RenewResponse, error) {
	h := s.hub
	name, cert, err := peerCluster(ctx)
	if err != nil {
		return nil, err
	}
	ec, err := h.admitted(ctx, name, cert)
	if err != nil {
		return nil, err
	}
	next, err := h.ca.SignClusterCSR(req.GetCsrPem(), name, h.opts.ClientCertValidity)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	patch := client.MergeFrom(ec.DeepCopy())
	ec.Annotations[AnnotationCertSerials] = serialHex(next) + "," + serialHex(cert)
	if err := h.client.Patch(ctx, ec, patch); err != nil {
		return nil, status.Errorf(codes.Unavailable, "recording the new certificate: %v", err)
	}
	h.log.Info("certificate renewed", "cluster", name, "serial", serialHex(next))
	return &linkpb.RenewResponse{CertificatePem: certs.EncodeCertPEM(next), CaPem: h.ca.CertPEM()}, nil
}

// admitted checks that a certificate belongs to a cluster this hub still
// admits: its EdgeCluster exists and lists the certificate's serial.
func (h *Hub) admitted(ctx context.Context, name string, cert *x509.Certificate) (*edgev1alpha1.EdgeCluster, error) {
	ec := &edgev1alpha1.EdgeCluster{}
	if err := h.client.Get(ctx, client.ObjectKey{Name: name}, ec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, status.Errorf(codes.PermissionDenied,
				"cluster %s has been removed from this parent: join again with a new token ('fornaxctl token create' at the parent)", name)
		}
		return nil, status.Errorf(codes.Unavailable, "reading EdgeCluster %s: %v", name, err)
	}
	if !slices.Contains(strings.Split(ec.Annotations[AnnotationCertSerials], ","), serialHex(cert)) {
		return nil, status.Errorf(codes.PermissionDenied,
			"this certificate of cluster %s has been revoked (the cluster re-joined or was removed): join again with a new token", name)
	}
	return ec, nil
}

// helloTimeout bounds the wait for a new stream's first frame.
const helloTimeout = 10 * time.Second

// Connect runs one child's stream: Hello, Welcome, then reports and
// heartbeats until the stream ends. A protocol error ends this stream only.
func (s *server) Connect(stream linkpb.Link_ConnectServer) error {
	h := s.hub
	ctx := stream.Context()
	name, cert, err := peerCluster(ctx)
	if err != nil {
		return err
	}
	log := h.log.With("cluster", name)
	if _, err := h.admitted(ctx, name, cert); err != nil {
		log.Info("stream refused", "reason", err.Error())
		return err
	}

	first := make(chan *linkpb.ChildFrame, 1)
	errc := make(chan error, 1)
	go func() {
		f, err := stream.Recv()
		if err != nil {
			errc <- err
			return
		}
		first <- f
	}()
	var hello *linkpb.Hello
	select {
	case f := <-first:
		hello = f.GetHello()
	case err := <-errc:
		return err
	case <-time.After(helloTimeout):
		return status.Error(codes.DeadlineExceeded, "no Hello within 10s")
	}
	if err := link.ValidateHello(hello, name); err != nil {
		log.Info("stream refused", "reason", err.Error())
		return status.Error(codes.InvalidArgument, err.Error())
	}
	version, err := link.Negotiate(hello.GetProtocolVersion())
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sess := &session{cancel: cancel, out: make(chan *linkpb.ParentFrame, 16), done: make(chan struct{}), sent: map[string]string{}, deleting: map[string]uint64{}}
	for _, v := range hello.GetHave() {
		sess.sent[link.HaveKey(v)] = v.GetDigest()
	}
	sess.haveDigests = hello.GetHaveDigests()
	defer close(sess.done)
	now := time.Now()
	h.mu.Lock()
	c := h.children[name]
	if c == nil {
		c = &child{states: map[string]*linkpb.ClusterState{}}
		h.children[name] = c
	}
	if c.session != nil {
		c.session.cancel() // a newer stream of the same cluster replaces the old one
	}
	c.session = sess
	c.connectedAt, c.lastSeen = now, now
	haveSeq := uint64(0)
	if c.epoch == hello.GetEpoch() {
		haveSeq = c.lastSeq
	} else {
		c.epoch, c.lastSeq = hello.GetEpoch(), 0
	}
	h.mu.Unlock()
	connectedChildren.Inc()
	h.notifyLink(name)
	log.Info("child connected", "epoch", hello.GetEpoch(), "haveSeq", haveSeq, "version", version)

	defer func() {
		h.mu.Lock()
		if c.session == sess {
			c.session = nil
			c.disconnectedAt = time.Now()
		}
		h.mu.Unlock()
		connectedChildren.Dec()
		h.notifyLink(h.subtreeNames(name)...) // its whole subtree is out of reach
		log.Info("child disconnected")
	}()

	if err := stream.Send(&linkpb.ParentFrame{Body: &linkpb.ParentFrame_Welcome{Welcome: &linkpb.Welcome{
		ProtocolVersion: version, Epoch: hello.GetEpoch(), ReportSeq: haveSeq,
		Parent: h.opts.Name, Path: h.path() + "/" + name, Depth: uint32(h.depth()) + 1,
	}}}); err != nil {
		return err
	}

	frames, recvErr := link.Pump(sctx, stream.Recv)
	h.requestSync() // the next delivery pass sends only what differs from Hello.have (or its digests)
	for {
		select {
		case <-sctx.Done():
			return status.Error(codes.Aborted, "stream replaced or cluster removed")
		case err := <-recvErr:
			return err
		case f := <-sess.out:
			if err := stream.Send(f); err != nil {
				return err
			}
		case f := <-frames:
			reply, err := h.handle(name, f)
			if err != nil {
				protocolErrors.Inc()
				log.Warn("protocol error; closing the stream", "error", err.Error())
				return status.Error(codes.InvalidArgument, err.Error())
			}
			if reply != nil {
				if err := stream.Send(reply); err != nil {
					return err
				}
			}
		}
	}
}

// handle applies one frame from a child and returns the answer, if any.
func (h *Hub) handle(name string, f *linkpb.ChildFrame) (*linkpb.ParentFrame, error) {
	if err := link.ValidateChildFrame(f, name); err != nil {
		return nil, err
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.children[name]
	c.lastSeen = now
	framesReceived.WithLabelValues(link.FrameType(f)).Inc()
	switch b := f.GetBody().(type) {
	case *linkpb.ChildFrame_Report:
		r := b.Report
		if !r.GetFull() && r.GetSeq() != c.lastSeq+1 {
			// A gap: this hub missed a report. Ask for everything.
			return resync(fmt.Sprintf("report %d follows %d", r.GetSeq(), c.lastSeq)), nil
		}
		changed, gateways, err := applyReport(c, r)
		if len(gateways) > 0 {
			h.notifyGateways(gateways...)
		}
		if err != nil {
			return resync(err.Error()), nil
		}
		size := proto.Size(r)
		if r.GetFull() {
			// Everything re-listed: the child or this hub lost its state (a
			// restart), or they disagreed. Worth knowing when it repeats.
			fullReports.Inc()
			reportBytes.WithLabelValues("full").Observe(float64(size))
			h.log.Info("full report from a child", "cluster", name, "clusters", len(r.GetClusters()), "bytes", size)
		} else {
			reportBytes.WithLabelValues("incremental").Observe(float64(size))
		}
		c.lastSeq = r.GetSeq()
		if len(changed) > 0 {
			c.lastReport = now
			h.notify(append(changed, name)...)
		}
		return &linkpb.ParentFrame{Body: &linkpb.ParentFrame_Ack{Ack: &linkpb.Ack{Seq: r.GetSeq()}}}, nil
	case *linkpb.ChildFrame_NameCheck:
		if c.session != nil {
			go h.answerNameCheck(c.session, name, b.NameCheck)
		}
		return nil, nil
	case *linkpb.ChildFrame_Heartbeat:
		hb := b.Heartbeat
		if hb.GetReportSeq() == c.lastSeq && len(hb.GetDigest()) > 0 && !equalBytes(hb.GetDigest(), link.Digest(values(c.states))) {
			return resync("state digest differs"), nil
		}
		if own := c.states[name]; own != nil && hb.GetOwn() != nil && !proto.Equal(own.GetSummary(), hb.GetOwn()) {
			own = proto.CloneOf(own)
			own.Summary = hb.GetOwn()
			c.states[name] = own
			c.lastReport = now
			h.notify(name)
		}
		return nil, nil
	case *linkpb.ChildFrame_HaveList:
		// What the child holds in the buckets whose digests differed: now
		// the differences can travel.
		if sess := c.session; sess != nil && sess.haveWanted != nil {
			for _, b := range b.HaveList.GetBuckets() {
				delete(sess.haveWanted, b)
			}
			for _, v := range b.HaveList.GetHave() {
				if sess.haveWanted[link.Bucket(link.HaveKey(v))] {
					continue // not one of the buckets this list answers for
				}
				sess.sent[link.HaveKey(v)] = v.GetDigest()
			}
			if len(sess.haveWanted) == 0 {
				sess.haveWanted = nil
				h.requestSync()
			}
		}
		return nil, nil
	case *linkpb.ChildFrame_Ack:
		// The child stored every object batch up to this one: deletions in
		// them have arrived.
		if c.session != nil {
			cleared := false
			for key, seq := range c.session.deleting {
				if seq <= b.Ack.GetSeq() {
					delete(c.session.deleting, key)
					cleared = true
				}
			}
			if cleared {
				h.notifyMissions()
				h.notifyNetwork()
			}
		}
		return nil, nil
	default:
		return nil, nil
	}
}

func resync(reason string) *linkpb.ParentFrame {
	return &linkpb.ParentFrame{Body: &linkpb.ParentFrame_Resync{Resync: &linkpb.ResyncRequest{Reason: reason}}}
}

// applyReport merges a report into the child's states and returns the
// clusters whose facts changed (or that left), and among them those whose
// gateway changed (or that left).
func applyReport(c *child, r *linkpb.Report) (changed, gateways []string, err error) {
	if r.GetFull() {
		keep := map[string]bool{}
		for _, s := range r.GetClusters() {
			keep[s.GetName()] = true
		}
		for n := range c.states {
			if !keep[n] {
				delete(c.states, n)
				changed, gateways = append(changed, n), append(gateways, n)
			}
		}
	}
	for _, n := range r.GetRemoved() {
		if _, ok := c.states[n]; ok {
			delete(c.states, n)
			changed, gateways = append(changed, n), append(gateways, n)
		}
	}
	for _, s := range r.GetClusters() {
		old := c.states[s.GetName()]
		s, err := link.ApplyDelta(old, s)
		if err != nil {
			return changed, gateways, err
		}
		if old == nil || !link.SameFacts(old, s) {
			changed = append(changed, s.GetName())
			if !proto.Equal(old.GetGateway(), s.GetGateway()) {
				gateways = append(gateways, s.GetName())
			}
		}
		c.states[s.GetName()] = s
	}
	return changed, gateways, nil
}

func values(m map[string]*linkpb.ClusterState) []*linkpb.ClusterState {
	out := make([]*linkpb.ClusterState, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func equalBytes(a, b []byte) bool { return string(a) == string(b) }
