// Command fornax-cni is Fornax's CNI plugin: a container runtime runs it to
// attach a pod to the VPC subnet named by the pod's annotation
// network.fornax.io/subnet. The logic is in internal/cni.
package main

import (
	"log/slog"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fornax-edge/fornax/internal/cni"
)

func main() {
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
