package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Flavor is the kind of cluster to start.
type Flavor string

const (
	// FlavorK8s is upstream Kubernetes on etcd.
	FlavorK8s Flavor = "k8s"
	// FlavorK3s is K3s-style: the same API server on kine over SQLite instead of
	// etcd, as K3s runs, with nodes that identify as K3s nodes.
	FlavorK3s Flavor = "k3s"
)

// NodeGroup is a set of simulated nodes served by one kwok process, so that
// the whole group can fail (stop heartbeating) at once.
type NodeGroup struct {
	// Name names the group; node names are <Name>-<i>.
	Name string
	// Count is the number of nodes.
	Count int
}

// Options say what cluster to start.
type Options struct {
	// Name is the cluster's name (a DNS label); required.
	Name string
	// Flavor is k8s (default) or k3s.
	Flavor Flavor
	// Dir is the cluster's directory. Anything there, and any process a
	// previous run left running for it, is removed first.
	Dir string
	// BinDir holds the pinned binaries; default FindBinDir().
	BinDir string
	// Host is the address every component binds to; default 127.0.0.1.
	Host string
	// NetNS runs every process of the cluster in this network namespace (a
	// path for nsenter --net, e.g. a netlab site's); Host is then an address
	// of that namespace.
	NetNS string
	// Dial opens the harness's own connections to the cluster (health
	// checks, Client, RESTConfig); nil dials from this process's namespace.
	// With NetNS, a dialer into that namespace keeps the cluster reachable
	// while its uplink is cut.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ControlPlane starts kube-controller-manager and kube-scheduler. It is
	// implied by NodeGroups.
	ControlPlane bool
	// NodeGroups are simulated nodes, one kwok process per group.
	NodeGroups []NodeGroup
	// NodeMonitorGracePeriod is how long a node may miss heartbeats before it
	// is marked unhealthy; 0 keeps the Kubernetes default (50 s).
	NodeMonitorGracePeriod time.Duration
	// PodEvictionTimeout is how long pods tolerate an unhealthy node before
	// they are evicted; 0 keeps the Kubernetes default (300 s).
	PodEvictionTimeout time.Duration
	// StartTimeout bounds the whole start; default 2 minutes.
	StartTimeout time.Duration
	// Detached lets the processes outlive the caller (the demo). Otherwise the
	// kernel kills them when the caller dies.
	Detached bool
	// Logger receives progress messages; nil discards them.
	Logger *slog.Logger
}

// Cluster is a running local cluster.
type Cluster struct {
	// Name is the cluster's name.
	Name string
	// Flavor is the kind of cluster.
	Flavor Flavor
	// Dir is the cluster's directory.
	Dir string
	// Kubeconfig is the path of an admin kubeconfig for the cluster.
	Kubeconfig string
	// Server is the API server's URL.
	Server string

	opts  Options
	pki   *pki
	procs processSet
	// The datastore's ports, for a restart.
	storePort, peerPort int
	log                 *slog.Logger
	client              kubernetes.Interface
	rest                *rest.Config

	mu         sync.Mutex
	nodeGroups map[string]*process // kwok process per node group; nil when stopped
}

// Info is what a started cluster records in its directory, for tools that
// did not start it (fornaxctl demo).
type Info struct {
	Name       string      `json:"name"`
	Flavor     Flavor      `json:"flavor"`
	Server     string      `json:"server"`
	Kubeconfig string      `json:"kubeconfig"`
	NodeGroups []NodeGroup `json:"nodeGroups,omitempty"`
}

// InfoFile is the name of the file in a cluster directory that holds its Info.
const InfoFile = "cluster.json"

// nodeGroupLabel marks the nodes of a node group; its kwok process manages
// exactly the nodes with its value.
const nodeGroupLabel = "localcluster.fornax.io/node-group"

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// errAddrInUse marks a start that failed because a port was taken between
// choosing it and binding it.
var errAddrInUse = errors.New("address already in use")

// Start starts a cluster and waits until it serves requests, its controllers
// are healthy and its nodes are Ready. On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if err := opts.complete(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var c *Cluster
		c, err = start(ctx, opts)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, errAddrInUse) {
			break
		}
		opts.Logger.Info("port taken while starting; retrying with new ports", "cluster", opts.Name, "attempt", attempt)
	}
	return nil, fmt.Errorf("starting cluster %s: %w", opts.Name, err)
}

// StartAll starts several clusters in parallel. If any fails, all are stopped.
func StartAll(ctx context.Context, opts ...Options) ([]*Cluster, error) {
	clusters := make([]*Cluster, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i := range opts {
		wg.Go(func() { clusters[i], errs[i] = Start(ctx, opts[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range clusters {
			if c != nil {
				_ = c.Stop()
			}
		}
		return nil, err
	}
	return clusters, nil
}

func (o *Options) complete() error {
	if !nameRE.MatchString(o.Name) || len(o.Name) > 63 {
		return fmt.Errorf("cluster name %q is not a DNS label (lowercase letters, digits and '-', at most 63)", o.Name)
	}
	switch o.Flavor {
	case "":
		o.Flavor = FlavorK8s
	case FlavorK8s, FlavorK3s:
	default:
		return fmt.Errorf("cluster %s: unknown flavor %q (want %s or %s)", o.Name, o.Flavor, FlavorK8s, FlavorK3s)
	}
	if o.Dir == "" {
		return fmt.Errorf("cluster %s: Options.Dir is required", o.Name)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("cluster %s: %w", o.Name, err)
	}
	o.Dir = dir
	if o.BinDir == "" {
		if o.BinDir, err = FindBinDir(); err != nil {
			return err
		}
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if len(o.NodeGroups) > 0 {
		o.ControlPlane = true
	}
	seen := map[string]bool{}
	for _, g := range o.NodeGroups {
		if !nameRE.MatchString(g.Name) || g.Count < 1 {
			return fmt.Errorf("cluster %s: node group %q needs a DNS-label name and at least one node", o.Name, g.Name)
		}
		if seen[g.Name] {
			return fmt.Errorf("cluster %s: node group %q given twice", o.Name, g.Name)
		}
		seen[g.Name] = true
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	need := []string{BinKubeAPIServer}
	if o.Flavor == FlavorK3s {
		need = append(need, BinKine)
	} else {
		need = append(need, BinEtcd)
	}
	if o.ControlPlane {
		need = append(need, BinKubeControllerManager, BinKubeScheduler)
	}
	if len(o.NodeGroups) > 0 {
		need = append(need, BinKwok, KwokStages)
	}
	return checkBinaries(o.BinDir, need...)
}

func start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	log := opts.Logger.With("cluster", opts.Name)
	if err := cleanDir(ctx, opts.Dir); err != nil {
		return nil, err
	}
	c := &Cluster{
		Name:       opts.Name,
		Flavor:     opts.Flavor,
		Dir:        opts.Dir,
		Kubeconfig: filepath.Join(opts.Dir, "kubeconfig"),
		opts:       opts,
		log:        log,
		nodeGroups: map[string]*process{},
	}
	defer func() {
		if err != nil {
			c.procs.stopAll()
		}
	}()
	began := time.Now()
	if c.pki, err = newPKI(filepath.Join(opts.Dir, "pki"), opts.Name, []string{opts.Host}); err != nil {
		return nil, err
	}
	p, err := ports.getN(opts.portHost(), 3)
	if err != nil {
		return nil, err
	}
	storePort, apiPort, peerPort := p[0], p[1], p[2]
	c.storePort, c.peerPort = storePort, peerPort
	c.Server = "https://" + hostPort(opts.Host, apiPort)

	store, err := c.startDatastore(ctx, storePort, peerPort)
	if err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx, store); err != nil {
		return nil, err
	}
	log.Info("API server ready", "server", c.Server, "elapsed", time.Since(began).Round(time.Millisecond))

	var wg sync.WaitGroup
	var errs [3]error
	if opts.ControlPlane {
		wg.Go(func() { errs[0] = c.startControllerManager(ctx) })
		wg.Go(func() { errs[1] = c.startScheduler(ctx) })
	}
	if len(opts.NodeGroups) > 0 {
		wg.Go(func() { errs[2] = c.startNodeGroups(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	if err := c.writeInfo(); err != nil {
		return nil, err
	}
	log.Info("cluster ready", "elapsed", time.Since(began).Round(time.Millisecond))
	return c, nil
}

// cleanDir removes what a previous run left: its processes, then its files.
func cleanDir(ctx context.Context, dir string) error {
	if _, err := os.Stat(dir); err == nil {
		kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := KillProcesses(kctx, dir); err != nil {
			return fmt.Errorf("cleaning up processes left in %s: %w", dir, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("removing stale cluster directory %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating cluster directory: %w", err)
	}
	return nil
}

func (c *Cluster) run(name, bin string, args ...string) (*process, error) {
	d, err := c.Run(name, filepath.Join(c.opts.BinDir, bin), args...)
	if err != nil {
		return nil, err
	}
	return d.p, nil
}

// owner is the pid recorded on child processes so tests can check for leaks.
func owner(detached bool) int {
	if detached {
		return 0
	}
	return os.Getpid()
}

// startDatastore starts etcd or kine and returns the URL the API server uses.
func (c *Cluster) startDatastore(ctx context.Context, port, peerPort int) (string, error) {
	host := c.opts.Host
	url := "http://" + hostPort(host, port)
	var p *process
	var err error
	var check func(context.Context) error
	if c.Flavor == FlavorK3s {
		dbDir := filepath.Join(c.Dir, "kine")
		if err := os.MkdirAll(dbDir, 0o700); err != nil {
			return "", fmt.Errorf("creating kine directory: %w", err)
		}
		p, err = c.run("kine", BinKine,
			"--listen-address", hostPort(host, port),
			"--metrics-bind-address", "0", // default :8080 would clash between clusters
			"--endpoint", "sqlite://"+filepath.Join(dbDir, "state.db")+"?_journal_mode=WAL&_busy_timeout=30000&cache=shared",
		)
		check = func(ctx context.Context) error { return c.dialOnce(ctx, hostPort(host, port)) }
	} else {
		p, err = c.run("etcd", BinEtcd,
			"--name", c.Name,
			"--data-dir", filepath.Join(c.Dir, "etcd"),
			"--listen-client-urls", url,
			"--advertise-client-urls", url,
			"--listen-peer-urls", "http://"+hostPort(host, peerPort),
			"--initial-advertise-peer-urls", "http://"+hostPort(host, peerPort),
			"--initial-cluster", c.Name+"=http://"+hostPort(host, peerPort),
			"--unsafe-no-fsync", // test and demo data; fsync costs seconds on a shared disk
			"--log-level", "warn",
		)
		check = func(ctx context.Context) error { return httpGetOK(ctx, c.httpClient(false), url+"/health") }
	}
	if err != nil {
		return "", err
	}
	return url, c.waitReady(ctx, p, check)
}

func (c *Cluster) startAPIServer(ctx context.Context, storeURL string) error {
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(c.Server, "https://"))
	args := []string{
		"--etcd-servers", storeURL,
		"--bind-address", c.opts.Host,
		"--advertise-address", c.opts.Host,
		// Nothing runs in-cluster that needs the kubernetes Service's
		// endpoints, and the reconciler refuses a loopback address.
		"--endpoint-reconciler-type", "none",
		"--secure-port", port,
		"--tls-cert-file", c.pki.apiserver.certPath,
		"--tls-private-key-file", c.pki.apiserver.keyPath,
		"--client-ca-file", c.pki.ca.certPath,
		"--authorization-mode", "Node,RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", c.pki.saPubPath,
		"--service-account-signing-key-file", c.pki.saKeyPath,
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--allow-privileged=true",
		"--shutdown-delay-duration=0s",
		"--profiling=false",
		"--v=1",
	}
	if t := c.opts.PodEvictionTimeout; t > 0 {
		s := strconv.Itoa(int(t.Round(time.Second) / time.Second))
		args = append(args, "--default-not-ready-toleration-seconds="+s, "--default-unreachable-toleration-seconds="+s)
	}
	p, err := c.run("kube-apiserver", BinKubeAPIServer, args...)
	if err != nil {
		return err
	}
	if err := c.writeKubeconfig(c.Kubeconfig, c.pki.admin); err != nil {
		return err
	}
	if c.rest, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	c.rest.Dial = c.opts.Dial
	if c.client, err = kubernetes.NewForConfig(c.rest); err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	rc := c.client.Discovery().RESTClient()
	return c.waitReady(ctx, p, func(ctx context.Context) error {
		body, err := rc.Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("/readyz: %w: %s", err, body)
		}
		return nil
	})
}

func (c *Cluster) startControllerManager(ctx context.Context) error {
	kc, err := c.componentKubeconfig("kube-controller-manager", "system:kube-controller-manager")
	if err != nil {
		return err
	}
	port, err := ports.get(c.opts.portHost())
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		"--bind-address", c.opts.Host, "--secure-port", strconv.Itoa(port),
		"--cert-dir", filepath.Join(c.Dir, "kube-controller-manager"),
		"--service-account-private-key-file", c.pki.saKeyPath,
		"--root-ca-file", c.pki.ca.certPath,
		"--cluster-signing-cert-file", c.pki.ca.certPath,
		"--cluster-signing-key-file", c.pki.ca.keyPath,
		"--use-service-account-credentials=true",
		"--leader-elect=false",
		"--cluster-name", c.Name,
		"--v=1",
	}
	if g := c.opts.NodeMonitorGracePeriod; g > 0 {
		args = append(args, "--node-monitor-grace-period="+g.String(), "--node-monitor-period=1s")
	}
	p, err := c.run("kube-controller-manager", BinKubeControllerManager, args...)
	if err != nil {
		return err
	}
	if err := c.waitReady(ctx, p, c.healthz(hostPort(c.opts.Host, port))); err != nil {
		return err
	}
	// Pods cannot be created before the service-account controller has made
	// the default ServiceAccount.
	return c.waitReady(ctx, p, func(ctx context.Context) error {
		_, err := c.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

func (c *Cluster) startScheduler(ctx context.Context) error {
	kc, err := c.componentKubeconfig("kube-scheduler", "system:kube-scheduler")
	if err != nil {
		return err
	}
	port, err := ports.get(c.opts.portHost())
	if err != nil {
		return err
	}
	p, err := c.run("kube-scheduler", BinKubeScheduler,
		"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		"--bind-address", c.opts.Host, "--secure-port", strconv.Itoa(port),
		"--cert-dir", filepath.Join(c.Dir, "kube-scheduler"),
		"--leader-elect=false",
		"--v=1",
	)
	if err != nil {
		return err
	}
	return c.waitReady(ctx, p, c.healthz(hostPort(c.opts.Host, port)))
}

// componentKubeconfig issues a client certificate for a control-plane
// component and writes its kubeconfig.
func (c *Cluster) componentKubeconfig(name, user string) (string, error) {
	kp, err := c.pki.clientCert(name, pkix.Name{CommonName: user})
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, name+".kubeconfig")
	return path, c.writeKubeconfig(path, kp)
}

func (c *Cluster) writeKubeconfig(path string, user keyPair) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.pki.ca.certPEM()}
	cfg.AuthInfos[c.Name] = &clientcmdapi.AuthInfo{ClientCertificateData: user.certPEM(), ClientKeyData: user.keyPEM()}
	cfg.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: c.Name}
	cfg.CurrentContext = c.Name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

func (c *Cluster) writeInfo() error {
	b, err := json.MarshalIndent(Info{
		Name: c.Name, Flavor: c.Flavor, Server: c.Server, Kubeconfig: c.Kubeconfig, NodeGroups: c.opts.NodeGroups,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding cluster info: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, InfoFile), b, 0o644); err != nil {
		return fmt.Errorf("writing cluster info: %w", err)
	}
	return nil
}

// ReadInfo reads the Info a cluster recorded in its directory.
func ReadInfo(dir string) (Info, error) {
	var info Info
	b, err := os.ReadFile(filepath.Join(dir, InfoFile))
	if err != nil {
		return info, fmt.Errorf("reading cluster info: %w", err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("decoding %s: %w", filepath.Join(dir, InfoFile), err)
	}
	return info, nil
}

// waitReady polls check until it succeeds, failing early (with the end of its
// log) if p exits, and when ctx ends.
func (c *Cluster) waitReady(ctx context.Context, p *process, check func(context.Context) error) error {
	var last error
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if p.exited() {
			err := p.exitError()
			if strings.Contains(tail(p.logPath, 30), "address already in use") {
				return fmt.Errorf("%w: %w", errAddrInUse, err)
			}
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to be ready (log: %s): last check: %w: %w", p.name, p.logPath, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// dataDir is where the datastore keeps the cluster's state.
func (c *Cluster) dataDir() string {
	if c.Flavor == FlavorK3s {
		return filepath.Join(c.Dir, "kine")
	}
	return filepath.Join(c.Dir, "etcd")
}

// SaveData copies the cluster's state (the datastore's directory) to dst, a
// directory that must not exist: a backup, as an operator would take one.
// The datastore and the API server are stopped meanwhile (a consistent copy)
// and started again.
func (c *Cluster) SaveData(ctx context.Context, dst string) error {
	return c.withStoreStopped(ctx, func() error {
		if err := os.CopyFS(dst, os.DirFS(c.dataDir())); err != nil {
			return fmt.Errorf("saving the state of %s: %w", c.Name, err)
		}
		return nil
	})
}

// RestoreData replaces the cluster's state with a copy SaveData made, as
// restoring a backup does: everything written since is lost.
func (c *Cluster) RestoreData(ctx context.Context, src string) error {
	return c.withStoreStopped(ctx, func() error {
		if err := os.RemoveAll(c.dataDir()); err != nil {
			return fmt.Errorf("restoring the state of %s: %w", c.Name, err)
		}
		if err := os.CopyFS(c.dataDir(), os.DirFS(src)); err != nil {
			return fmt.Errorf("restoring the state of %s: %w", c.Name, err)
		}
		// etcd wants its directories private.
		return filepath.WalkDir(c.dataDir(), func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			return os.Chmod(path, 0o700)
		})
	})
}

// withStoreStopped stops the API server and the datastore, runs f, and
// starts them again on the same addresses.
func (c *Cluster) withStoreStopped(ctx context.Context, f func() error) error {
	c.procs.mu.Lock()
	var stop []*process
	for _, p := range c.procs.procs {
		switch p.name {
		case "kube-apiserver", "etcd", "kine":
			stop = append(stop, p)
		}
	}
	c.procs.mu.Unlock()
	for _, p := range stop { // the API server first: it was started last
		if p.name == "kube-apiserver" {
			p.stop()
			c.procs.remove(p)
		}
	}
	for _, p := range stop {
		if p.name != "kube-apiserver" {
			p.stop()
			c.procs.remove(p)
		}
	}
	ferr := f()
	store, err := c.startDatastore(ctx, c.storePort, c.peerPort)
	if err != nil {
		return errors.Join(ferr, err)
	}
	return errors.Join(ferr, c.startAPIServer(ctx, store))
}

// RESTConfig returns a client configuration with admin rights.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.rest) }

// Client returns a typed client with admin rights.
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// Stop stops every process of the cluster (SIGTERM, then SIGKILL after a few
// seconds) and checks that none is left. The directory stays.
func (c *Cluster) Stop() error {
	c.procs.stopAll()
	c.mu.Lock()
	clear(c.nodeGroups)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return KillProcesses(ctx, c.Dir)
}

// Remove stops the cluster and deletes its directory.
func (c *Cluster) Remove() error {
	if err := c.Stop(); err != nil {
		return err
	}
	return os.RemoveAll(c.Dir)
}

// Err returns an error if a process of the cluster has exited unexpectedly.
func (c *Cluster) Err() error { return c.procs.firstExited() }

// Components returns the pid of each running process of the cluster, by
// component name (etcd, kube-apiserver, kwok-<group>, ...).
func (c *Cluster) Components() map[string]int {
	c.procs.mu.Lock()
	defer c.procs.mu.Unlock()
	out := make(map[string]int, len(c.procs.procs))
	for _, p := range c.procs.procs {
		if !p.exited() {
			out[p.name] = p.pid()
		}
	}
	return out
}

// portHost is where free ports are looked for: a fresh namespace has every
// port free, and its address cannot be bound from here.
func (o *Options) portHost() string {
	if o.NetNS != "" {
		return "127.0.0.1"
	}
	return o.Host
}

func (c *Cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.opts.Dial != nil {
		return c.opts.Dial(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (c *Cluster) dialOnce(ctx context.Context, addr string) error {
	conn, err := c.dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

func httpGetOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}

// httpClient reads the components' health endpoints; selfSigned trusts
// components that serve a self-signed certificate (only their health
// endpoints are read through it).
func (c *Cluster) httpClient(selfSigned bool) *http.Client {
	t := &http.Transport{DialContext: c.dial, DisableKeepAlives: true}
	if selfSigned {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // health checks of components we started
	}
	return &http.Client{Transport: t}
}

func (c *Cluster) healthz(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		return httpGetOK(ctx, c.httpClient(true), "https://"+addr+"/healthz")
	}
}

// nodeReady reports whether a node's Ready condition is True.
func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func ignoreAlreadyExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// RSS returns the resident memory of each running process of the cluster, in
// bytes, by component name.
func (c *Cluster) RSS() (map[string]uint64, error) {
	out := map[string]uint64{}
	for name, pid := range c.Components() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return nil, fmt.Errorf("reading memory of %s: %w", name, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
				kb, err := strconv.ParseUint(f[1], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("parsing memory of %s: %w", name, err)
				}
				out[name] = kb * 1024
			}
		}
	}
	return out, nil
}

// Daemon is an extra process run alongside a cluster's components (fornaxd,
// in tests): it belongs to the cluster, so Stop and the leak check cover it.
type Daemon struct {
	c *Cluster
	p *process
}

// Run starts path with args as part of the cluster, logging to
// <Dir>/logs/<name>.log.
func (c *Cluster) Run(name, path string, args ...string) (*Daemon, error) {
	p, err := startProcess(processSpec{
		name: name, path: path, args: args, netns: c.opts.NetNS, dir: c.Dir, logDir: filepath.Join(c.Dir, "logs"),
		owner: owner(c.opts.Detached), detached: c.opts.Detached,
	})
	if err != nil {
		return nil, err
	}
	c.procs.add(p)
	return &Daemon{c: c, p: p}, nil
}

// Stop stops the daemon (SIGTERM, then SIGKILL) and waits for it.
func (d *Daemon) Stop() {
	d.p.stop()
	d.c.procs.remove(d.p)
}

// Kill kills the daemon at once, as a crash would.
func (d *Daemon) Kill() {
	d.p.kill()
	d.c.procs.remove(d.p)
}

// Exited reports whether the daemon has exited.
func (d *Daemon) Exited() bool { return d.p.exited() }

// LogPath is the daemon's log file.
func (d *Daemon) LogPath() string { return d.p.logPath }

// Log returns the last n lines of the daemon's log.
func (d *Daemon) Log(n int) string { return tail(d.p.logPath, n) }
