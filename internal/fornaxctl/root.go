// Package fornaxctl implements the fornaxctl command line: one file per
// command group, each a thin layer over the packages that do the work.
package fornaxctl

import (
	"github.com/spf13/cobra"
)

// NewCommand returns the fornaxctl root command.
func NewCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "fornaxctl",
		Short: "Operate a Fornax tree of edge Kubernetes clusters",
		Long: `fornaxctl operates a Fornax tree: a cloud Kubernetes control plane that manages
a tree of edge Kubernetes clusters, delivers workloads (Missions) to selected
clusters at any depth, and reports their status back to the root.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInitCommand(), newTokenCommand(), newJoinCommand(), newGetCommand(), newRemoveCommand(), newMissionCommand(), newDescribeCommand(), newDemoCommand())
	return root
}
