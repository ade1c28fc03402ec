// Command fornax-cni is Fornax's CNI plugin: a container runtime runs it to
// attach a pod to the VPC subnet named by the pod's annotation
// network.fornax.io/subnet. Run as 'fornax-cni install' (the fornax-cni
// DaemonSet), it installs itself on the node instead. The logic is in
// internal/cni.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fornax-edge/fornax/internal/cni"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "install" {
		if err := install(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "fornax-cni install:", err)
			os.Exit(1)
		}
		return
	}
	// Stdout is the CNI result's; diagnostics, warnings only, go to stderr.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctrllog.SetLogger(logr.FromSlogHandler(log.Handler()))
	if err := skel.PluginMainFuncsWithError((&cni.Plugin{Log: log}).Funcs(), cni.Versions, cni.About); err != nil {
		if perr := err.Print(); perr != nil {
			log.Error("writing the error to stdout", "err", perr)
		}
		os.Exit(1)
	}
}

// install puts the plugin, its kubeconfig and the network configuration on
// the node, then keeps the token fresh until it is stopped.
func install(args []string) error {
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	o := cni.InstallOptions{}
	fs := flag.NewFlagSet("fornax-cni install", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: fornax-cni install [flags]\n\nInstalls fornax-cni on this node from a pod (the fornax-cni DaemonSet) with the host's\nCNI directories mounted, then keeps the plugin's service account token fresh.\n\nFlags:")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.BinDir, "bin-dir", "/host/opt/cni/bin", "the host's CNI plugin directory, as mounted in this pod")
	fs.StringVar(&o.ConfDir, "conf-dir", "/host/etc/cni/net.d", "the host's CNI configuration directory, as mounted in this pod")
	fs.StringVar(&o.HostConfDir, "host-conf-dir", "/etc/cni/net.d", "the same directory as the runtime sees it on the host")
	fs.StringVar(&o.ConfName, "conf-name", cni.DefaultConfName, "file name of the network configuration (network name \"fornax\")")
	fs.StringVar(&o.RouterPrefix, "router-prefix", "", "the gateway's --gateway-prefix (default: fornaxd's default)")
	fs.StringVar(&o.DataDir, "data-dir", cni.DefaultDataDir, "where the plugin records address allocations on the host")
	fs.StringVar(&o.CAFile, "ca-file", sa+"ca.crt", "the API server's CA")
	fs.StringVar(&o.TokenFile, "token-file", sa+"token", "the service account token the plugin uses")
	resync := fs.Duration("token-resync", 30*time.Second, "how often the token is checked for rotation (0: install once and exit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return fmt.Errorf("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: run it in a pod")
	}
	o.Server = "https://" + net.JoinHostPort(host, port)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o.Self = self
	if err := cni.Install(o); err != nil {
		return err
	}
	fmt.Printf("installed %s in %s and %s in %s\n", cni.PluginName, o.BinDir, o.ConfName, o.ConfDir)
	if *resync == 0 {
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	t := time.NewTicker(*resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if changed, err := cni.SyncToken(o); err != nil {
				fmt.Fprintln(os.Stderr, "fornax-cni install: refreshing the token:", err)
			} else if changed {
				fmt.Println("token refreshed")
			}
		}
	}
}
