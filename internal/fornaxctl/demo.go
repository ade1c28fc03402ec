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
nodes. The clusters keep running until 'fornaxctl demo down'.

Run as root, the demo also builds a network: each cluster runs in a network
namespace of its own on a bridge (as on separate machines), dublin, factory-7
and us run a gateway, a sample VPC (examples/network) gets a subnet in each,
and a pod in each, wired by fornax-cni, pings the others across the gateways.
Without root that part is left out, and the demo says so.`,
	}
	cmd.PersistentFlags().StringVar(&o.Dir, "dir", ".fornax/demo", "directory holding one sub-directory (data, logs, kubeconfig) per cluster")
	cmd.PersistentFlags().StringVar(&o.BinDir, "bin-dir", "", "directory of the pinned binaries (default: bin/ of the Fornax checkout, or $FORNAX_BIN)")
	up := &cobra.Command{
		Use:   "up",
		Short: "Start (or restart) the demo clusters and print them",
		Example: `  # Start the demo tree, replacing any previous one
  fornaxctl demo up

  # The same without the network part (no root needed)
  fornaxctl demo up --network off`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out = cmd.OutOrStdout()
			return demo.Up(cmd.Context(), o)
		},
	}
	up.Flags().StringVar(&o.Network, "network", demo.NetworkAuto,
		"the network part (clusters in network namespaces, gateways, a VPC, pods pinging across it): auto (when run as root), on (fail without root) or off")
	_ = up.RegisterFlagCompletionFunc("network", cobra.FixedCompletions([]string{demo.NetworkAuto, demo.NetworkOn, demo.NetworkOff}, cobra.ShellCompDirectiveNoFileComp))
	cmd.AddCommand(up)
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
