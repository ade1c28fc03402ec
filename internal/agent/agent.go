// Package agent is the child side of the Fornax link (fornaxd's agent role):
// it dials the parent with the credentials `fornaxctl join` stored, reports
// its own cluster (change-based reports, coalesced per report interval, and a
// regular heartbeat), reconnects with jittered backoff, and renews its
// certificate before it expires.
//
// The package never imports the hub package: the two meet only through the
// protocol in internal/link.
package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fornax-edge/fornax/internal/apply"
	"github.com/fornax-edge/fornax/internal/certs"
	"github.com/fornax-edge/fornax/internal/join"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// Options configure an agent.
type Options struct {
	// Namespace holds the link credentials Secret.
	Namespace string
	// ReportInterval coalesces change-based reports: at most one per interval.
	ReportInterval time.Duration
	// HeartbeatInterval is the period of the full-summary heartbeat.
	HeartbeatInterval time.Duration
	// KeepaliveTime and KeepaliveTimeout bound dead-link detection.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// Distro overrides distribution detection (k8s, k3s, other).
	Distro string
	// Version is the fornaxd version, sent in Hello.
	Version string
	Logger  *slog.Logger
	// Subtree, for a middle cluster (fornaxd with the hub role too), returns
	// the states of every cluster below this one; they travel up with this
	// cluster's own state. The hub calls MarkDirty when they change.
	Subtree func() []*linkpb.ClusterState
	// OnPosition is told this cluster's path in the tree whenever the
	// parent's Welcome states it (and once at start, from the stored one).
	OnPosition func(path string)
	// ReconnectMaxDelay caps the backoff between attempts to reach the
	// parent; default DefaultReconnectMaxDelay.
	ReconnectMaxDelay time.Duration
	// OrphanGrace is how long a mission the parent no longer knows keeps
	// running here before it is deleted; default DefaultOrphanGrace.
	OrphanGrace time.Duration
	// Relay: this cluster's hub relays the parent's objects to children
	// (a middle cluster). Network objects are then stored with the hub's
	// delivery finalizer, so their deletion reaches the children.
	Relay bool
	// OnLinkChange is told when the link to the parent comes up or goes
	// down (the gateway marks its peers stale meanwhile).
	OnLinkChange func(up bool)
}

// Defaults of Options.
const (
	DefaultOrphanGrace       = time.Hour
	DefaultReconnectMaxDelay = time.Minute
)

func (o *Options) complete() {
	if o.ReportInterval <= 0 {
		o.ReportInterval = link.ReportInterval
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = link.HeartbeatInterval
	}
	if o.KeepaliveTime <= 0 {
		o.KeepaliveTime = link.KeepaliveTime
	}
	if o.KeepaliveTimeout <= 0 {
		o.KeepaliveTimeout = link.KeepaliveTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.OrphanGrace <= 0 {
		o.OrphanGrace = DefaultOrphanGrace
	}
	if o.ReconnectMaxDelay <= 0 {
		o.ReconnectMaxDelay = DefaultReconnectMaxDelay
	}
}

// Agent is the agent role of fornaxd.
type Agent struct {
	opts  Options
	kube  kubernetes.Interface
	log   *slog.Logger
	creds atomic.Pointer[join.Credentials]
	// credsMu serialises updates of the stored credentials.
	credsMu sync.Mutex
	epoch   uint64
	cert    atomic.Pointer[tls.Certificate]
	dirty   chan struct{}
	nodes   func() []*corev1.Node

	client  client.Client // this cluster's API, for the parent's missions and network objects
	applier *apply.Applier
	watch   *objectWatch
	// deferred holds network objects to store once their predecessor of the
	// same name is gone.
	deferred deferredObjects

	// outgoing carries frames from other goroutines (name checks) to the
	// session; pending holds the name checks awaiting their answer.
	outgoing  chan *linkpb.ChildFrame
	linkUp    atomic.Bool
	requestID atomic.Uint64
	pendingMu sync.Mutex
	pending   map[uint64]chan *linkpb.NameCheckResult

	mu       sync.Mutex
	missions map[string]*linkpb.MissionState   // by namespace/name, for reports
	applied  map[string]appliedRecord          // by namespace/name: the last successful apply
	seq      uint64                            // last report seq sent in this epoch
	acked    uint64                            // last report seq the parent acknowledged
	sentAt   map[uint64][]*linkpb.ClusterState // states as of each unacknowledged report
	ackedSt  []*linkpb.ClusterState            // states as of acked
}

// New loads the credentials and prepares an agent.
func New(ctx context.Context, opts Options, kube kubernetes.Interface) (*Agent, error) {
	opts.complete()
	creds, err := join.Load(ctx, kube, opts.Namespace)
	if err != nil {
		return nil, err
	}
	cert, err := creds.Certificate()
	if err != nil {
		return nil, err
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	a := &Agent{
		opts: opts, kube: kube, epoch: binary.LittleEndian.Uint64(b[:]) | 1,
		log:   opts.Logger.With("role", "agent", "cluster", creds.Cluster, "parent", creds.ParentAddress),
		dirty: make(chan struct{}, 1), sentAt: map[uint64][]*linkpb.ClusterState{},
		missions: map[string]*linkpb.MissionState{}, applied: map[string]appliedRecord{},
		outgoing: make(chan *linkpb.ChildFrame, 16), pending: map[uint64]chan *linkpb.NameCheckResult{},
	}
	a.creds.Store(creds)
	a.cert.Store(cert)
	return a, nil
}

// Cluster returns this cluster's name in the tree.
func (a *Agent) Cluster() string { return a.creds.Load().Cluster }

// CheckName asks the parent (and through it the whole tree up to the root)
// whether a cluster name is taken. It fails when the uplink is down.
func (a *Agent) CheckName(ctx context.Context, name, uid string) (bool, string, error) {
	if !a.linkUp.Load() {
		return false, "", errors.New("the uplink to the parent is down")
	}
	id := a.requestID.Add(1)
	ch := make(chan *linkpb.NameCheckResult, 1)
	a.pendingMu.Lock()
	a.pending[id] = ch
	a.pendingMu.Unlock()
	defer func() {
		a.pendingMu.Lock()
		delete(a.pending, id)
		a.pendingMu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	f := &linkpb.ChildFrame{Body: &linkpb.ChildFrame_NameCheck{NameCheck: &linkpb.NameCheck{RequestId: id, Name: name, ClusterUid: uid}}}
	select {
	case a.outgoing <- f:
	case <-ctx.Done():
		return false, "", fmt.Errorf("asking the parent: %w", ctx.Err())
	}
	select {
	case r := <-ch:
		return r.GetTaken(), r.GetMessage(), nil
	case <-ctx.Done():
		return false, "", fmt.Errorf("waiting for the parent's answer: %w", ctx.Err())
	}
}

// MarkDirty asks for a change-based report (coalesced per report interval).
func (a *Agent) MarkDirty() { a.markDirty() }

// Connected tells whether the link to the parent is up.
func (a *Agent) Connected() bool { return a.linkUp.Load() }

// setLinkUp records the link's state and tells OnLinkChange.
func (a *Agent) setLinkUp(up bool) {
	if a.linkUp.Swap(up) != up && a.opts.OnLinkChange != nil {
		a.opts.OnLinkChange(up)
	}
}

// Path returns this cluster's path in the tree as last stated by the parent
// (stored, so known while the uplink is down), or "" before the first Welcome.
func (a *Agent) Path() string { return a.creds.Load().Path }

// setPath records the path the parent stated.
func (a *Agent) setPath(ctx context.Context, path string) {
	a.credsMu.Lock()
	defer a.credsMu.Unlock()
	cur := a.creds.Load()
	if path == "" || cur.Path == path {
		return
	}
	next := *cur
	next.Path = path
	if err := join.Save(ctx, a.kube, a.opts.Namespace, &next); err != nil {
		a.log.Warn("cannot store this cluster's path in the tree", "error", err.Error())
	}
	a.creds.Store(&next)
	a.log.Info("position in the tree", "path", path)
	if a.opts.OnPosition != nil {
		a.opts.OnPosition(path)
	}
}

func (a *Agent) markDirty() {
	select {
	case a.dirty <- struct{}{}:
	default:
	}
}

// Run watches the cluster, keeps the link up and renews the certificate until
// ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(a.kube, 0)
	nodeInformer := factory.Core().V1().Nodes()
	if _, err := nodeInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { a.markDirty() },
		UpdateFunc: func(any, any) { a.markDirty() },
		DeleteFunc: func(any) { a.markDirty() },
	}); err != nil {
		return err
	}
	lister := nodeInformer.Lister()
	a.nodes = func() []*corev1.Node {
		ns, _ := lister.List(labels.Everything())
		return ns
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	go a.rotate(ctx)
	b := &link.Backoff{Min: time.Second, Max: max(time.Second, a.opts.ReconnectMaxDelay), Jitter: 0.3}
	link.Loop(ctx, b, a.session)
	factory.Shutdown()
	return nil
}

// states is what this cluster reports: its own state and, for a middle
// cluster, those of its subtree.
func (a *Agent) states(ctx context.Context) []*linkpb.ClusterState {
	out := []*linkpb.ClusterState{a.ownState(ctx)}
	if a.opts.Subtree != nil {
		out = append(out, a.opts.Subtree()...)
	}
	return out
}

// ownState is the current state of this cluster.
func (a *Agent) ownState(ctx context.Context) *linkpb.ClusterState {
	version := ""
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if v, err := a.kube.Discovery().RESTClient().Get().AbsPath("/version").Do(cctx).Raw(); err == nil {
		version = parseVersion(v)
	}
	return &linkpb.ClusterState{
		Name:           a.creds.Load().Cluster,
		Connected:      true,
		Summary:        summarize(version, a.opts.Version, a.nodes(), a.opts.Distro),
		ObservedUnixMs: time.Now().UnixMilli(),
		Missions:       a.missionStates(),
		Gateway:        a.gatewayState(ctx),
	}
}

func (a *Agent) dial() (*grpc.ClientConn, error) {
	creds := a.creds.Load()
	roots, err := creds.Roots()
	if err != nil {
		return nil, err
	}
	cfg := link.ClientTLS(roots, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return a.cert.Load(), nil })
	return grpc.NewClient(creds.ParentAddress,
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: a.opts.KeepaliveTime, Timeout: a.opts.KeepaliveTimeout, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(link.MaxFrameBytes)),
		grpc.WithContextDialer(link.MeteredDialer(link.RoleChild)),
		grpc.WithStatsHandler(link.StatsHandler(link.RoleChild)),
	)
}

// session runs one connection to the parent and says whether it got as far
// as a Welcome.
func (a *Agent) session(ctx context.Context) bool {
	a.reloadCredentials(ctx)
	conn, err := a.dial()
	if err != nil {
		a.log.Error("cannot dial the parent", "error", err.Error())
		return false
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := linkpb.NewLinkClient(conn).Connect(sctx)
	if err != nil {
		a.logStreamError("cannot open the stream", err)
		return false
	}
	have, err := a.have(ctx)
	if err != nil {
		a.log.Error("cannot tell the parent what this cluster holds; retrying", "error", err.Error())
		return false
	}
	a.mu.Lock()
	hello := &linkpb.Hello{
		ProtocolVersion: link.ProtocolVersion, Cluster: a.Cluster(), AgentVersion: a.opts.Version,
		Epoch: a.epoch, LastReportSeq: a.seq,
		ReportIntervalMs: uint32(a.opts.ReportInterval.Milliseconds()), HeartbeatIntervalMs: uint32(a.opts.HeartbeatInterval.Milliseconds()),
	}
	a.mu.Unlock()
	if len(have) > link.HaveDirectMax {
		hello.HaveDigests = link.HaveDigests(have) // the parent asks for the buckets that differ
	} else {
		hello.Have = have
	}
	if err := stream.Send(&linkpb.ChildFrame{Body: &linkpb.ChildFrame_Hello{Hello: hello}}); err != nil {
		a.logStreamError("cannot send Hello", err)
		return false
	}
	first, err := stream.Recv()
	if err != nil {
		a.logStreamError("the parent refused the stream", err)
		return false
	}
	w := first.GetWelcome()
	if w == nil {
		a.log.Error("the parent's first frame is not a Welcome; reconnecting")
		return false
	}
	a.log.Info("connected to the parent", "path", w.GetPath(), "protocol", w.GetProtocolVersion(), "parentHasSeq", w.GetReportSeq())
	a.setPath(ctx, w.GetPath())

	// What the parent holds: the acknowledged states if it says so, else nothing.
	a.mu.Lock()
	var base []*linkpb.ClusterState
	full := true
	if w.GetReportSeq() != 0 && w.GetReportSeq() == a.acked {
		base, full = a.ackedSt, false
	}
	a.mu.Unlock()

	incoming, errc := link.Pump(sctx, stream.Recv)
	a.setLinkUp(true)
	defer a.setLinkUp(false)

	send := func(f *linkpb.ChildFrame) error { return stream.Send(f) }
	var lastReport time.Time
	report := func() error {
		states := a.states(sctx)
		r := diff(base, states, full)
		if r == nil {
			return nil
		}
		a.mu.Lock()
		a.seq++
		r.Seq = a.seq
		a.sentAt[r.Seq] = states
		a.mu.Unlock()
		if err := send(&linkpb.ChildFrame{Body: &linkpb.ChildFrame_Report{Report: r}}); err != nil {
			return err
		}
		base, full, lastReport = states, false, time.Now()
		return nil
	}
	if err := report(); err != nil {
		a.logStreamError("sending the first report", err)
		return true
	}
	heartbeat := time.NewTicker(a.opts.HeartbeatInterval)
	defer heartbeat.Stop()
	var coalesce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return true
		case err := <-errc:
			a.logStreamError("link lost", err)
			return true
		case f := <-incoming:
			switch b := f.GetBody().(type) {
			case *linkpb.ParentFrame_Ack:
				a.ack(b.Ack.GetSeq())
			case *linkpb.ParentFrame_Objects:
				t0 := time.Now()
				if err := a.storeObjects(sctx, b.Objects); err != nil {
					// Not acknowledged: the parent's view of what this
					// cluster holds stays behind, and the batch is resent.
					a.log.Error("cannot store the parent's objects; reconnecting", "error", err.Error())
					return true
				}
				a.log.Debug("objects stored", "seq", b.Objects.GetSeq(), "objects", len(b.Objects.GetObjects()), "took", time.Since(t0))
				if err := send(&linkpb.ChildFrame{Body: &linkpb.ChildFrame_Ack{Ack: &linkpb.Ack{Seq: b.Objects.GetSeq()}}}); err != nil {
					a.logStreamError("acknowledging objects", err)
					return true
				}
			case *linkpb.ParentFrame_HaveRequest:
				wanted := map[uint32]bool{}
				for _, b := range b.HaveRequest.GetBuckets() {
					wanted[b] = true
				}
				list := &linkpb.HaveList{Buckets: b.HaveRequest.GetBuckets()}
				have, err := a.have(sctx)
				if err != nil {
					a.log.Error("cannot tell the parent what this cluster holds; reconnecting", "error", err.Error())
					return true
				}
				for _, v := range have {
					if wanted[link.Bucket(link.HaveKey(v))] {
						list.Have = append(list.Have, v)
					}
				}
				if err := send(&linkpb.ChildFrame{Body: &linkpb.ChildFrame_HaveList{HaveList: list}}); err != nil {
					a.logStreamError("telling the parent what this cluster holds", err)
					return true
				}
			case *linkpb.ParentFrame_NameCheckResult:
				a.pendingMu.Lock()
				if ch := a.pending[b.NameCheckResult.GetRequestId()]; ch != nil {
					ch <- b.NameCheckResult
					delete(a.pending, b.NameCheckResult.GetRequestId())
				}
				a.pendingMu.Unlock()
			case *linkpb.ParentFrame_Resync:
				a.log.Info("the parent asked for a full report", "reason", b.Resync.GetReason())
				full = true
				if err := report(); err != nil {
					a.logStreamError("sending a full report", err)
					return true
				}
			}
		case f := <-a.outgoing:
			if err := send(f); err != nil {
				a.logStreamError("sending to the parent", err)
				return true
			}
		case <-a.dirty:
			// Change-based report: at once if the last one is older than the
			// interval, else when the interval is up (coalescing bursts).
			if coalesce == nil {
				coalesce = time.After(time.Until(lastReport.Add(a.opts.ReportInterval)))
			}
		case <-coalesce:
			coalesce = nil
			if err := report(); err != nil {
				a.logStreamError("sending a report", err)
				return true
			}
		case <-heartbeat.C:
			own := a.ownState(sctx)
			a.mu.Lock()
			seq := a.seq
			a.mu.Unlock()
			hb := &linkpb.Heartbeat{ReportSeq: seq, Digest: link.Digest(base), Own: own.GetSummary()}
			if err := send(&linkpb.ChildFrame{Body: &linkpb.ChildFrame_Heartbeat{Heartbeat: hb}}); err != nil {
				a.logStreamError("sending a heartbeat", err)
				return true
			}
		}
	}
}

// ack records the parent's acknowledgement of every report up to seq.
func (a *Agent) ack(seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st, ok := a.sentAt[seq]; ok && seq > a.acked {
		a.acked, a.ackedSt = seq, st
	}
	for s := range a.sentAt {
		if s <= seq {
			delete(a.sentAt, s)
		}
	}
}

// diff returns the report that takes the parent from base to now, or nil if
// nothing changed. A full report lists everything.
func diff(base, now []*linkpb.ClusterState, full bool) *linkpb.Report {
	if full {
		return &linkpb.Report{Full: true, Clusters: now}
	}
	old := map[string]*linkpb.ClusterState{}
	for _, s := range base {
		old[s.GetName()] = s
	}
	r := &linkpb.Report{}
	for _, s := range now {
		o, ok := old[s.GetName()]
		delete(old, s.GetName())
		if ok && link.SameFacts(o, s) {
			continue
		}
		if ok {
			s = link.DeltaState(o, s) // only the missions that changed
		}
		r.Clusters = append(r.Clusters, s)
	}
	for n := range old {
		r.Removed = append(r.Removed, n)
	}
	if len(r.Clusters) == 0 && len(r.Removed) == 0 {
		return nil
	}
	return r
}

func (a *Agent) logStreamError(msg string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument, codes.FailedPrecondition:
		a.log.Error(msg+"; the parent refuses this cluster", "error", st.Message())
	case codes.Canceled:
	default:
		a.log.Warn(msg+"; reconnecting", "error", st.Message())
	}
}

// rotate renews the client certificate when two thirds of its life have
// passed (with jitter, so clusters joined together do not renew together).
// Open streams carry on; the new certificate is used from the next connection.
func (a *Agent) rotate(ctx context.Context) {
	for {
		leaf := a.cert.Load().Leaf
		issued := leaf.NotBefore.Add(certs.Backdate)
		life := leaf.NotAfter.Sub(issued)
		at := issued.Add(time.Duration(float64(life) * (0.6 + 0.13*mrand.Float64())))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		if err := a.renew(ctx); err != nil {
			a.log.Error("certificate renewal failed; retrying in a minute", "error", err.Error(), "expires", leaf.NotAfter)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Minute):
			}
		}
	}
}

func (a *Agent) renew(ctx context.Context) error {
	conn, err := a.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	keyPEM, csrPEM, err := certs.NewCSR(a.Cluster())
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := linkpb.NewLinkClient(conn).Renew(cctx, &linkpb.RenewRequest{CsrPem: csrPEM})
	if err != nil {
		return fmt.Errorf("renewing the certificate: %w", err)
	}
	next := *a.creds.Load()
	next.CertPEM, next.KeyPEM, next.CAPEM = resp.GetCertificatePem(), keyPEM, resp.GetCaPem()
	cert, err := next.Certificate()
	if err != nil {
		return err
	}
	if err := join.Save(ctx, a.kube, a.opts.Namespace, &next); err != nil {
		return err
	}
	a.creds.Store(&next)
	a.cert.Store(cert)
	a.log.Info("certificate renewed", "expires", cert.Leaf.NotAfter)
	return nil
}

// parseVersion extracts gitVersion from the API server's /version answer.
func parseVersion(raw []byte) string {
	var v struct {
		GitVersion string `json:"gitVersion"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return ""
	}
	return v.GitVersion
}

// reloadCredentials picks up credentials that changed in the cluster since
// they were loaded (the cluster re-joined), so a reconnect uses them.
func (a *Agent) reloadCredentials(ctx context.Context) {
	c, err := join.Load(ctx, a.kube, a.opts.Namespace)
	if err != nil {
		a.log.Warn("cannot reload the link credentials; using the ones loaded before", "error", err.Error())
		return
	}
	if bytes.Equal(c.CertPEM, a.creds.Load().CertPEM) {
		return
	}
	cert, err := c.Certificate()
	if err != nil {
		a.log.Error("the stored link credentials are damaged; using the ones loaded before", "error", err.Error())
		return
	}
	if c.Cluster != a.Cluster() {
		a.log.Error("the cluster re-joined under another name; restart fornaxd to use it", "newName", c.Cluster)
		return
	}
	a.creds.Store(c)
	a.cert.Store(cert)
	a.log.Info("loaded new link credentials", "parent", c.ParentAddress, "expires", cert.Leaf.NotAfter)
}

func protoEqual(a, b *linkpb.MissionState) bool { return proto.Equal(a, b) }
