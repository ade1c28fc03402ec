// Command fornaxctl is the operator's tool for a Fornax tree of clusters. It is
// also installed as the kubectl plugin kubectl-fornax.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/fornax-edge/fornax/internal/fornaxctl"
)

func main() {
	// controller-runtime's clients log warnings only (deprecated APIs); it
	// complains on stderr if no logger is set.
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := fornaxctl.NewCommand()
	if filepath.Base(os.Args[0]) == "kubectl-fornax" {
		// Help as kubectl shows the plugin.
		fornaxctl.AsKubectlPlugin(cmd)
	}
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
