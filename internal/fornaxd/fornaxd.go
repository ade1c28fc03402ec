// Package fornaxd wires fornaxd's roles into one process: the hub role
// (--listen), the agent role (whenever the cluster has joined a parent) and
// the gateway role (--gateway-endpoint), with Prometheus metrics and health
// endpoints.
package fornaxd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	edgev1alpha1 "github.com/fornax-edge/fornax/api/edge/v1alpha1"
	networkv1alpha1 "github.com/fornax-edge/fornax/api/network/v1alpha1"
	"github.com/fornax-edge/fornax/internal/agent"
	"github.com/fornax-edge/fornax/internal/certs"
	"github.com/fornax-edge/fornax/internal/gateway"
	"github.com/fornax-edge/fornax/internal/hub"
	"github.com/fornax-edge/fornax/internal/join"
	"github.com/fornax-edge/fornax/internal/link"
	"github.com/fornax-edge/fornax/internal/link/linkpb"
	"github.com/fornax-edge/fornax/internal/netadmit"
	"github.com/fornax-edge/fornax/internal/netplane"
	"github.com/fornax-edge/fornax/internal/version"
)

// Options are fornaxd's settings.
type Options struct {
	Kubeconfig        string
	Namespace         string
	ClusterName       string
	Listen            string
	Advertise         []string
	ReportInterval    time.Duration
	OrphanGrace       time.Duration
	ReconnectMaxDelay time.Duration
	HeartbeatInterval time.Duration
	KeepaliveTime     time.Duration
	KeepaliveTimeout  time.Duration
	ReadyGrace        time.Duration
	CertValidity      time.Duration
	Distro            string
	QPS               float32
	Burst             int
	MetricsAddr       string
	HealthAddr        string
	PprofAddr         string
	WebhookListen     string
	WebhookURL        string
	LogLevel          string
	GatewayEndpoint   string
	GatewayPrefix     string
	GatewayResync     time.Duration
}

// NewCommand returns the fornaxd command.
func NewCommand() *cobra.Command { return newCommand(Run) }

func newCommand(run func(context.Context, Options) error) *cobra.Command {
	o := Options{}
	var configFile string
	cmd := &cobra.Command{
		Use:   "fornaxd",
		Short: "The Fornax daemon: hub role for child clusters, agent role toward the parent",
		Long: `fornaxd runs in every cluster of a Fornax tree.

Hub role (--listen): accepts child clusters that joined with a token from
'fornaxctl token create', and keeps one EdgeCluster per child in this cluster's
API server. Run 'fornaxctl init' in the cluster first (it creates the hub CA).

Agent role: runs whenever this cluster has joined a parent ('fornaxctl join'
stored the credentials in the Secret fornax-system/fornax-agent); it reports this
cluster to the parent and keeps the link up. A middle cluster runs both.

Gateway role (--gateway-endpoint): programs this cluster's share of the VPCs'
data plane (a router network namespace per VPC, a bridge per local subnet,
VXLAN to the other gateways) from the VPCs, Subnets and Gateways in this
cluster, and writes this cluster's Gateway, which travels up the tree to the
other clusters of its VPCs. Run it on the gateway node, with hostNetwork and
NET_ADMIN; stopping fornaxd leaves the data plane in place.`,
		Example: `  # The root: hub role only
  fornaxd --kubeconfig root.kubeconfig --listen :7443 --cluster-name root

  # A leaf that joined a parent: agent role only
  fornaxd --kubeconfig edge.kubeconfig --report-interval 2s

  # A leaf whose gateway node has the underlay address 192.0.2.10
  fornaxd --kubeconfig edge.kubeconfig --gateway-endpoint 192.0.2.10`,
		SilenceUsage: true,
		Version:      version.Get(),
		Args:         cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile != "" {
				if err := applyConfigFile(cmd.Flags(), configFile); err != nil {
					return err
				}
			}
			return run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "YAML file of settings named like the flags (listen: \":7443\"); flags given on the command line win")
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig of this cluster (default: in-cluster, or $KUBECONFIG)")
	f.StringVar(&o.Namespace, "namespace", hub.DefaultNamespace, "namespace of Fornax's own objects")
	f.StringVar(&o.ClusterName, "cluster-name", "", "this cluster's name, for the hub role of the root (a joined cluster uses its joined name)")
	f.StringVar(&o.Listen, "listen", "", "address for the hub role to serve children on, e.g. :7443 (empty: no hub role)")
	f.StringSliceVar(&o.Advertise, "advertise", nil, "host names and addresses children dial, for the serving certificate")
	f.DurationVar(&o.ReportInterval, "report-interval", link.ReportInterval, "agent: coalescing interval of change-based reports (sub-second allowed)")
	f.DurationVar(&o.ReconnectMaxDelay, "reconnect-max-delay", agent.DefaultReconnectMaxDelay, "agent: the longest wait between attempts to reach the parent (the wait doubles from 1 s, with 30% jitter)")
	f.DurationVar(&o.OrphanGrace, "orphan-grace", agent.DefaultOrphanGrace, "agent: how long a mission the parent no longer knows (it lost its state) keeps running before it is deleted")
	f.DurationVar(&o.HeartbeatInterval, "heartbeat-interval", link.HeartbeatInterval, "agent: period of the full-summary heartbeat")
	f.DurationVar(&o.KeepaliveTime, "keepalive-time", link.KeepaliveTime, "silence after which a keepalive ping is sent on the link")
	f.DurationVar(&o.KeepaliveTimeout, "keepalive-timeout", link.KeepaliveTimeout, "how long a ping may go unanswered before the link is dropped")
	f.DurationVar(&o.ReadyGrace, "ready-grace", link.ReadyGrace, "hub: how long a disconnected child keeps its Ready condition before it turns Unknown")
	f.DurationVar(&o.CertValidity, "client-cert-validity", 30*24*time.Hour, "hub: lifetime of the client certificates issued to children (they renew at about two thirds)")
	f.StringVar(&o.Distro, "distro", "", "agent: report this distribution (k8s, k3s, other) instead of detecting it")
	f.Float32Var(&o.QPS, "kube-api-qps", 200, "queries per second to this cluster's API server (client-side limit; the API server's priority and fairness still applies; client-go's default of 5 throttles mission delivery)")
	f.IntVar(&o.Burst, "kube-api-burst", 400, "burst of queries to this cluster's API server")
	f.StringVar(&o.MetricsAddr, "metrics-bind-address", ":9090", "address of the Prometheus /metrics endpoint ('0' disables it)")
	f.StringVar(&o.HealthAddr, "health-bind-address", ":9091", "address of /healthz and /readyz ('0' disables them)")
	f.StringVar(&o.WebhookListen, "webhook-listen", "", "hub: address of the admission webhook that checks Subnets against their VPC and the VPC's other subnets, e.g. :9443 (empty: off)")
	f.StringVar(&o.WebhookURL, "webhook-url", "", "hub: the URL the API server calls the webhook at (empty: the Service "+netadmit.ServiceName+" in --namespace, port 9443)")
	f.StringVar(&o.PprofAddr, "pprof-bind-address", "", "address of Go's /debug/pprof profiles, e.g. 127.0.0.1:6060 (empty: off); for diagnosing memory and CPU")
	f.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.GatewayEndpoint, "gateway-endpoint", "", "gateway role: the underlay IPv4 address of this cluster's gateway node, where fornaxd runs with hostNetwork and NET_ADMIN (empty: no gateway role)")
	f.StringVar(&o.GatewayPrefix, "gateway-prefix", netplane.DefaultPrefix, "gateway role: prefix of the router network namespaces (<prefix>-vpc-<VNI>); fornax-cni's routerPrefix must be the same")
	f.DurationVar(&o.GatewayResync, "gateway-resync", gateway.DefaultResync, "gateway role: how often the data plane is checked and repaired when nothing changes")
	return cmd
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
}

// Run runs fornaxd until ctx ends.
func Run(ctx context.Context, o Options) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))

	cfg, err := restConfig(o.Kubeconfig)
	if err != nil {
		return fmt.Errorf("loading the cluster's kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = o.QPS, o.Burst
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := edgev1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := networkv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, manager.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress: o.HealthAddr,
		PprofBindAddress:       o.PprofAddr,
		Logger:                 logr.FromSlogHandler(log.Handler()),
	})
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// Ready once the informer caches have synced (every role works from
	// them); the hub also once it serves the link (added below).
	if err := mgr.AddReadyzCheck("informers", func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("the informer caches have not synced yet")
		}
		return nil
	}); err != nil {
		return err
	}

	roles := 0
	// A middle cluster runs both roles: the agent reports the hub's subtree
	// upward, and the hub places its children below the agent's position.
	var (
		h  *hub.Hub
		gw *gateway.Gateway
	)
	ag, err := agent.New(ctx, agent.Options{
		Relay: o.Listen != "",
		OnLinkChange: func(bool) {
			if gw != nil {
				gw.Nudge()
			}
		},
		Namespace: o.Namespace, ReportInterval: o.ReportInterval, HeartbeatInterval: o.HeartbeatInterval, OrphanGrace: o.OrphanGrace, ReconnectMaxDelay: o.ReconnectMaxDelay,
		KeepaliveTime: o.KeepaliveTime, KeepaliveTimeout: o.KeepaliveTimeout, Distro: o.Distro,
		Version: version.Get(), Logger: log,
		Subtree: func() []*linkpb.ClusterState {
			if h == nil {
				return nil
			}
			return h.Subtree()
		},
		OnPosition: func(path string) {
			if h != nil {
				h.SetPath(path)
			}
		},
	}, kube)
	switch {
	case err == nil:
		roles++
		if err := ag.SetupWithManager(mgr); err != nil {
			return err
		}
		if err := mgr.Add(manager.RunnableFunc(ag.Run)); err != nil {
			return err
		}
	case errors.Is(err, join.ErrNotJoined):
		ag = nil
	default:
		return err
	}

	if o.Listen != "" {
		hopts := hub.Options{
			Name: o.ClusterName, Namespace: o.Namespace, Listen: o.Listen, Hosts: o.Advertise,
			KeepaliveTime: o.KeepaliveTime, KeepaliveTimeout: o.KeepaliveTimeout, ReadyGrace: o.ReadyGrace,
			ClientCertValidity: o.CertValidity, Logger: log,
		}
		if ag != nil {
			// A middle cluster: its name and place come from its parent (the
			// stored path until the parent states it again).
			hopts.Name, hopts.Path = ag.Cluster(), ag.Path()
			if hopts.Path == "" {
				hopts.Path = "?/" + ag.Cluster() // not yet stated by the parent
			}
			hopts.OnSubtreeChange, hopts.LocalMissionState, hopts.CheckNameUp = ag.MarkDirty, ag.MissionState, ag.CheckName
		}
		if hopts.Name == "" {
			return errors.New("the hub role needs this cluster's name: give --cluster-name (e.g. root)")
		}
		hopts.Events = mgr.GetEventRecorder("fornax-hub")
		h, err = hub.New(ctx, hopts, kube, mgr.GetClient())
		if err != nil {
			return err
		}
		if err := h.SetupWithManager(mgr); err != nil {
			return err
		}
		if err := mgr.Add(manager.RunnableFunc(h.Serve)); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("link", h.Listening); err != nil {
			return err
		}
		if o.WebhookListen != "" {
			if err := addWebhook(mgr, kube, h, scheme, hopts.Name, o); err != nil {
				return err
			}
		}
		roles++
	}
	if o.GatewayEndpoint != "" {
		gopts, err := gatewayOptions(o, ag, log)
		if err != nil {
			return err
		}
		if gw, err = gateway.New(gopts, nil); err != nil {
			return err
		}
		defer gw.Close() //nolint:errcheck // releases a namespace handle; the data plane stays
		if err := gw.SetupWithManager(mgr); err != nil {
			return err
		}
		roles++
	}
	if roles == 0 {
		return errors.New("nothing to do: give --listen for the hub role, or join this cluster to a parent with 'fornaxctl join' for the agent role")
	}
	log.Info("fornaxd starting", "version", version.Get(), "hub", o.Listen != "", "agent", ag != nil, "gateway", gw != nil)
	return mgr.Start(ctx)
}

// gatewayOptions are the gateway role's options: this cluster's name is the
// one it joined with, or --cluster-name at the root.
func gatewayOptions(o Options, ag *agent.Agent, log *slog.Logger) (gateway.Options, error) {
	endpoint, err := netip.ParseAddr(o.GatewayEndpoint)
	if err != nil || !endpoint.Is4() {
		return gateway.Options{}, fmt.Errorf("--gateway-endpoint %q is not an IPv4 address: give the underlay address of this cluster's gateway node", o.GatewayEndpoint)
	}
	gopts := gateway.Options{Cluster: o.ClusterName, Endpoint: endpoint, Prefix: o.GatewayPrefix, Resync: o.GatewayResync, Logger: log}
	if ag != nil {
		gopts.Cluster, gopts.ParentConnected = ag.Cluster(), ag.Connected
	}
	if gopts.Cluster == "" {
		return gateway.Options{}, errors.New("the gateway role needs this cluster's name: join it to a parent, or give --cluster-name at the root")
	}
	return gopts, nil
}

// applyConfigFile sets every flag named in a YAML file that was not given on
// the command line.
func applyConfigFile(flags *pflag.FlagSet, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading --config: %w", err)
	}
	settings := map[string]any{}
	if err := yaml.Unmarshal(raw, &settings); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	for key, value := range settings {
		fl := flags.Lookup(key)
		if fl == nil || key == "config" {
			return fmt.Errorf("%s: unknown setting %q (settings are named like fornaxd's flags; see fornaxd --help)", path, key)
		}
		if fl.Changed {
			continue
		}
		var text string
		switch v := value.(type) {
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			text = strings.Join(parts, ",")
		default:
			text = fmt.Sprint(v)
		}
		if err := flags.Set(key, text); err != nil {
			return fmt.Errorf("%s: setting %s: %w", path, key, err)
		}
	}
	return nil
}

// addWebhook serves the network admission webhook with a certificate from
// the hub's CA and registers it with this cluster's API server.
func addWebhook(mgr manager.Manager, kube kubernetes.Interface, h *hub.Hub, scheme *runtime.Scheme, name string, o Options) error {
	host, portStr, err := net.SplitHostPort(o.WebhookListen)
	if err != nil {
		return fmt.Errorf("--webhook-listen %q: %w", o.WebhookListen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("--webhook-listen %q: the port is not a number", o.WebhookListen)
	}
	srv := netadmit.NewServer(host, port, h.ServingCertificate, netadmit.NewHandler(mgr.GetAPIReader(), scheme, name))
	if err := mgr.Add(srv); err != nil {
		return err
	}
	// Registered once it serves: the webhook fails closed, so registering
	// earlier would refuse subnets while it starts.
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		started := srv.StartedChecker()
		if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
			return started(nil) == nil, nil
		}); err != nil {
			return nil // stopping
		}
		if err := netadmit.Register(ctx, kube, certs.EncodeCertPEM(h.CA()), o.WebhookURL, o.Namespace, netadmit.ServiceName); err != nil {
			return fmt.Errorf("registering the network admission webhook: %w", err)
		}
		return nil
	}))
}
