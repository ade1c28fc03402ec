package fornaxctl

import (
	"github.com/spf13/cobra"

	"github.com/fornax-edge/fornax/internal/demo"
)

func newDemoCommand() *cobra.Command {
	o := demo.Options{}
	cmd := &cobra.Command{
		Use: "demo",
		Example: `  fornaxctl demo up
  fornaxctl demo down`,
		Short: "Run a local demo tree of real Kubernetes clusters",
		Long: `demo starts a local root cluster and edge clusters on this machine, built from
the pinned upstream Kubernetes binaries (run 'make tools' first, or use 'make demo').
Each cluster is a real etcd (or kine/SQLite for the K3s-style one) and
kube-apiserver, with kube-controller-manager, kube-scheduler and kwok-simulated
nodes. The clusters keep running until 'fornaxctl demo down'.`,
	}
	cmd.PersistentFlags().StringVar(&o.Dir, "dir", ".fornax/demo", "directory holding one sub-directory (data, logs, kubeconfig) per cluster")
	cmd.PersistentFlags().StringVar(&o.BinDir, "bin-dir", "", "directory of the pinned binaries (default: bin/ of the Fornax checkout, or $FORNAX_BIN)")
	cmd.AddCommand(&cobra.Command{
		Use:   "up",
		Short: "Start (or restart) the demo clusters and print them",
		Example: `  # Start the demo tree, replacing any previous one
  fornaxctl demo up`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out = cmd.OutOrStdout()
			return demo.Up(cmd.Context(), o)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "down",
		Short:   "Stop the demo clusters and remove their directory",
		Example: `  fornaxctl demo down`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out = cmd.OutOrStdout()
			return demo.Down(cmd.Context(), o)
		},
	})
	return cmd
}
