// Command fornaxctl is the operator's tool for a Fornax tree of clusters. It is
// also installed as the kubectl plugin kubectl-fornax.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fornax-edge/fornax/internal/fornaxctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := fornaxctl.NewCommand()
	if filepath.Base(os.Args[0]) == "kubectl-fornax" {
		// Help as kubectl shows the plugin.
		cmd.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl fornax"}
	}
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
