// Package hub is the parent side of the Fornax link (fornaxd's hub role): it
// accepts child clusters (Join, Renew, Connect), keeps what they report in
// memory, and reflects it into one EdgeCluster per child in its own API
// server, writing only when something changes. It sends each child the
// missions and the network objects (VPCs, Subnets, Gateways) its subtree
// needs, materialises the Gateways its subtree reports, and, at the root,
// allocates the VPCs' VNIs and keeps VPC and Subnet status.
//
// The package never imports the agent package: the two meet only through the
// protocol in internal/link.
package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fornax-edge/fornax/internal/certs"
	"github.com/fornax-edge/fornax/internal/install"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
)

// DefaultNamespace is where Fornax keeps its objects in each cluster.
const DefaultNamespace = install.Namespace

// Annotations the hub keeps on each child's EdgeCluster.
const (
	// AnnotationClusterUID records the child's identity (its kube-system UID).
	AnnotationClusterUID = "edge.fornax.io/cluster-uid"
	// AnnotationCertSerials lists the serials (hex) of the child's valid client
	// certificates, newest first: the current and the one it replaced.
	AnnotationCertSerials = "edge.fornax.io/certificate-serials"
)

// Options configure a hub.
type Options struct {
	// Name is this cluster's name: the parent of every child.
	Name string
	// Path places this cluster in the tree: "root", "root/eu". Default: Name.
	// A middle cluster's hub learns it from its parent (SetPath).
	Path string
	// Namespace holds the CA Secret and the tokens.
	Namespace string
	// Listen is the address to serve on.
	Listen string
	// Hosts are the names and addresses children dial, for the serving certificate.
	Hosts []string
	// ClientCertValidity is how long an issued client certificate lasts.
	ClientCertValidity time.Duration
	// KeepaliveTime and KeepaliveTimeout bound dead-link detection.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// ReadyGrace is how long a disconnected child keeps its last Ready state
	// before it turns Unknown.
	ReadyGrace time.Duration
	// StartupGrace is how long after the hub starts children get to reconnect
	// before being shown offline.
	StartupGrace time.Duration
	Logger       *slog.Logger
	// OnSubtreeChange, for a middle cluster, is called when what Subtree
	// returns may have changed (the agent then reports upward). It is called
	// with the hub's lock held: it must only signal, not call the hub.
	OnSubtreeChange func()
	// LocalMissionState, for a middle cluster, returns the state of a
	// parent's mission in this cluster itself (nil if it is not applied here).
	LocalMissionState func(namespace, name string) *linkpb.MissionState
	// CheckNameUp, for a middle cluster, asks the parent whether a name is
	// taken anywhere in the tree (err when the parent cannot be asked).
	CheckNameUp func(ctx context.Context, name, uid string) (taken bool, message string, err error)
	// Events records Kubernetes Events on EdgeClusters and Missions (link
	// up and down, readiness, orphans, deletions); nil records none.
	Events events.EventRecorder
}

func (o *Options) complete() error {
	if err := link.ValidClusterName(o.Name); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if o.Path == "" {
		o.Path = o.Name
	}
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.ClientCertValidity == 0 {
		o.ClientCertValidity = 30 * 24 * time.Hour
	}
	if o.KeepaliveTime == 0 {
		o.KeepaliveTime = link.KeepaliveTime
	}
	if o.KeepaliveTimeout == 0 {
		o.KeepaliveTimeout = link.KeepaliveTimeout
	}
	if o.ReadyGrace == 0 {
		o.ReadyGrace = link.ReadyGrace
	}
	if o.StartupGrace == 0 {
		o.StartupGrace = o.KeepaliveTime + o.KeepaliveTimeout + 5*time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Hub is the hub role of fornaxd.
type Hub struct {
	opts      Options
	kube      kubernetes.Interface
	client    client.Client // EdgeClusters
	log       *slog.Logger
	started   time.Time
	ca        *certs.CA
	listening atomic.Bool   // the link's listener accepts children
	changed   chan struct{} // signals that dirty holds names
	dirtyMu   sync.Mutex
	// dirty holds the clusters whose view changed; true marks a change of
	// connectivity (a link up or down), reconciled before the others.
	dirty map[string]bool
	// missionsChanged asks for every mission to be delivered and its status
	// derived again (a report, a link up or down, a cluster relabelled).
	missionsChanged chan struct{}
	// syncNeeded asks the delivery worker to send every child what changed;
	// a burst of requests is served by one pass.
	syncNeeded chan struct{}
	// viaIndexed: h.client's cache indexes EdgeClusters by LabelVia (set up
	// before the manager starts).
	viaIndexed bool
	// networkChanged asks for the deleted network objects to be looked at
	// again (a child acknowledged a deletion).
	networkChanged chan struct{}
	// gatewaysChanged signals that gwDirty (under dirtyMu) holds clusters
	// whose reported gateway may have changed.
	gatewaysChanged chan struct{}
	gwDirty         map[string]struct{}

	servingMu   sync.Mutex
	serving     *tls.Certificate
	servingRenw time.Time

	// treePath is this cluster's path once its parent has stated it.
	treePath atomic.Pointer[string]

	mu       sync.Mutex
	children map[string]*child
	// childLabels holds each child's own labels as set here, for Subtree.
	childLabels map[string]map[string]string
	// delivered holds each mission's delivery version as last seen by the
	// mission reconciler.
	delivered map[string]string
	// placed holds each cluster's placement facts as last seen (placementFacts).
	placed map[string]string
	// vnis holds the VNIs this (root) hub wrote, by VPC name, so that one
	// its cache has not seen yet is not given twice.
	vnis map[string]int32
}

// child is what the hub knows about one connected (or once connected) child.
type child struct {
	session        *session // nil when disconnected
	epoch          uint64
	lastSeq        uint64
	states         map[string]*linkpb.ClusterState // the child's subtree, itself included
	connectedAt    time.Time
	disconnectedAt time.Time
	lastSeen       time.Time
	lastReport     time.Time
}

type session struct {
	cancel context.CancelFunc
	out    chan *linkpb.ParentFrame // frames for the stream's goroutine to send
	done   chan struct{}            // closed when the stream ends

	// Guarded by Hub.mu.
	sent     map[string]string // object key → digest of what the child holds
	deleting map[string]uint64 // object key → batch with its deletion, until acknowledged
	batchSeq uint64
	// haveDigests are the Hello's bucket digests, until the first pass
	// compares them; haveWanted the buckets asked for (HaveRequest) and not
	// answered yet. Nothing is sent to the child meanwhile.
	haveDigests []byte
	haveWanted  map[uint32]bool
}

// New creates a hub. It loads the CA from the hub's namespace; `fornaxctl
// init` creates it.
func New(ctx context.Context, opts Options, kube kubernetes.Interface, c client.Client) (*Hub, error) {
	if err := opts.complete(); err != nil {
		return nil, err
	}
	ca, err := install.HubCA(ctx, kube, opts.Namespace)
	if err != nil {
		return nil, err
	}
	return &Hub{
		opts: opts, kube: kube, client: c, log: opts.Logger.With("role", "hub"),
		started: time.Now(), ca: ca, changed: make(chan struct{}, 1), dirty: map[string]bool{}, missionsChanged: make(chan struct{}, 1),
		syncNeeded: make(chan struct{}, 1), networkChanged: make(chan struct{}, 1), gatewaysChanged: make(chan struct{}, 1), gwDirty: map[string]struct{}{},
		children: map[string]*child{}, delivered: map[string]string{}, childLabels: map[string]map[string]string{}, placed: map[string]string{},
		vnis: map[string]int32{},
	}, nil
}

// CA returns the hub's CA certificate.
func (h *Hub) CA() *x509.Certificate { return h.ca.Cert }

// getServingCert returns the serving certificate, issuing a new one when
// two thirds of the current one's life have passed.
func (h *Hub) getServingCert(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.ServingCertificate(nil)
}

// ServingCertificate is the hub's serving certificate (for the link and the
// admission webhook), issued by its CA for localhost, the listen address and
// --advertise, renewed at two thirds of its life.
func (h *Hub) ServingCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	h.servingMu.Lock()
	defer h.servingMu.Unlock()
	if h.serving != nil && time.Now().Before(h.servingRenw) {
		return h.serving, nil
	}
	const validity = 365 * 24 * time.Hour
	hosts := append([]string{"localhost", "127.0.0.1"}, h.opts.Hosts...)
	if host, _, err := net.SplitHostPort(h.opts.Listen); err == nil && host != "" {
		hosts = append(hosts, host)
	}
	certPEM, keyPEM, err := h.ca.IssueServing(hosts, validity)
	if err != nil {
		return nil, err
	}
	// The chain includes the CA: a joining child pins it by hash.
	pair, err := tls.X509KeyPair(append(certPEM, h.ca.CertPEM()...), keyPEM)
	if err != nil {
		return nil, err
	}
	h.serving = &pair
	h.servingRenw = time.Now().Add(validity * 2 / 3)
	return h.serving, nil
}

// Listening is a readiness check: nil once the link's listener accepts
// children.
func (h *Hub) Listening(*http.Request) error {
	if !h.listening.Load() {
		return errors.New("the hub does not serve the link yet")
	}
	return nil
}

// Serve listens and serves the link until ctx ends.
func (h *Hub) Serve(ctx context.Context) error {
	lis, err := net.Listen("tcp", h.opts.Listen)
	if err != nil {
		return fmt.Errorf("hub: listening on %s: %w (is another fornaxd running there?)", h.opts.Listen, err)
	}
	return h.ServeListener(ctx, lis)
}

// ServeListener serves the link on lis until ctx ends.
func (h *Hub) ServeListener(ctx context.Context, lis net.Listener) error {
	pool := x509.NewCertPool()
	pool.AddCert(h.ca.Cert)
	srv := h.GRPCServer(pool)
	h.log.Info("serving the link", "address", lis.Addr().String(), "caHash", certs.Hash(h.ca.Cert))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(link.MeteredListener(lis, link.RoleParent)) }()
	h.listening.Store(true)
	defer h.listening.Store(false)
	select {
	case <-ctx.Done():
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			srv.Stop()
		}
		return nil
	case err := <-errc:
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return fmt.Errorf("hub: serving: %w", err)
	}
}

// GRPCServer returns the link's gRPC server with TLS 1.3, keepalives and
// frame limits.
func (h *Hub) GRPCServer(clientCAs *x509.CertPool) *grpc.Server {
	creds := newTransportCredentials(link.ServerTLS(h.getServingCert, clientCAs))
	srv := grpc.NewServer(
		grpc.Creds(creds),
		grpc.MaxRecvMsgSize(link.MaxFrameBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: h.opts.KeepaliveTime, Timeout: h.opts.KeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: h.opts.KeepaliveTime / 2, PermitWithoutStream: true}),
		grpc.StatsHandler(link.StatsHandler(link.RoleParent)),
		// Thousands of mostly idle links: gRPC keeps a 32 KiB read buffer per
		// link by default (320 MiB at 10,000 children; write buffers are
		// shared already). Heartbeats and acks are tiny: 8 KiB is enough.
		grpc.ReadBufferSize(8<<10),
	)
	linkpb.RegisterLinkServer(srv, &server{hub: h})
	return srv
}

// notify asks the reconcilers to look at clusters, and the missions, again.
func (h *Hub) notify(names ...string) { h.notifyPriority(false, names) }

// notifyLink is notify for a link that went up or down: those clusters'
// statuses go ahead of the ones queued for reports (after a mission to every
// cluster, thousands of summaries are written; a disconnect must not wait
// behind them).
func (h *Hub) notifyLink(names ...string) { h.notifyPriority(true, names) }

func (h *Hub) notifyPriority(link bool, names []string) {
	h.notifyMissions()
	h.dirtyMu.Lock()
	for _, n := range names {
		h.dirty[n] = h.dirty[n] || link
	}
	h.dirtyMu.Unlock()
	select {
	case h.changed <- struct{}{}:
	default: // a signal is pending: it covers these names
	}
	if h.opts.OnSubtreeChange != nil {
		h.opts.OnSubtreeChange()
	}
}

// takeDirty returns and forgets the clusters notified since the last call:
// those whose link changed, and the others.
func (h *Hub) takeDirty() (link, other []string) {
	h.dirtyMu.Lock()
	defer h.dirtyMu.Unlock()
	for n, l := range h.dirty {
		if l {
			link = append(link, n)
		} else {
			other = append(other, n)
		}
	}
	clear(h.dirty)
	return link, other
}

// snapshot returns what the hub knows about a child, as a view for
// deriveStatus (without the previous status and generation).
func (h *Hub) snapshot(name string, now time.Time) view {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := view{
		name: name, self: h.opts.Name, hubStarted: h.started, now: now,
		parent: h.opts.Name, parentPath: h.path(), parentDepth: h.depth(),
		readyGrace: h.opts.ReadyGrace, startupGrace: h.opts.StartupGrace,
	}
	childName, c, st := h.locate(name)
	if c == nil {
		return v
	}
	if childName != name {
		return h.descendantView(v, childName, c, st)
	}
	v.known = true
	v.connected = c.session != nil
	v.own = c.states[name]
	v.connectedAt = c.connectedAt
	v.disconnectedAt = c.disconnectedAt
	v.lastSeen = c.lastSeen
	v.lastReport = c.lastReport
	return v
}

// disconnect ends a child's session, if any (revocation, replacement).
func (h *Hub) disconnect(name string) {
	h.mu.Lock()
	c := h.children[name]
	var cancel context.CancelFunc
	if c != nil && c.session != nil {
		cancel = c.session.cancel
	}
	h.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Connected returns the names of the connected children.
func (h *Hub) Connected() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for n, c := range h.children {
		if c.session != nil {
			out = append(out, n)
		}
	}
	return out
}
