// Package fornaxctl implements the fornaxctl command line: one file per
// command group, each a thin layer over the packages that do the work.
package fornaxctl

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fornax-edge/fornax/internal/version"
)

// NewCommand returns the fornaxctl root command.
func NewCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "fornaxctl",
		Short: "Operate a Fornax tree of edge Kubernetes clusters",
		Long: `fornaxctl operates a Fornax tree: a cloud Kubernetes control plane that manages
a tree of edge Kubernetes clusters, delivers workloads (Missions) to selected
clusters at any depth, and reports their status back to the root.`,
		Example: `  # at the root
  fornaxctl init --cluster-name root --endpoint hub.example.com:7443
  fornaxctl token create
  # in an edge cluster, the command token create printed
  fornaxctl join --parent hub.example.com:7443 --token ... --ca-hash sha256:... --name berlin-3
  # then, at the root
  fornaxctl get clusters --tree
  fornaxctl mission status web -n shop`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get(),
	}
	root.AddCommand(&cobra.Command{
		Use:     "version",
		Short:   "Print fornaxctl's version (fornaxd's: 'kubectl get edgeclusters -o wide', column FORNAX)",
		Example: "  fornaxctl version",
		Args:    cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.Get())
		},
	})
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Example = `  # bash, for this shell
  source <(fornaxctl completion bash)
  # zsh, for every new shell
  fornaxctl completion zsh > "${fpath[1]}/_fornaxctl"`
			for _, sh := range c.Commands() {
				sh.Example = "  fornaxctl completion " + sh.Name() + " --help    # where to put it for " + sh.Name()
			}
		}
	}
	root.AddCommand(newInitCommand(), newTokenCommand(), newJoinCommand(), newGetCommand(), newRemoveCommand(), newMissionCommand(), newDescribeCommand(), newDemoCommand())
	return root
}

// AsKubectlPlugin adjusts the help for the name kubectl shows the plugin
// under: "kubectl fornax", in the usage lines and every example.
func AsKubectlPlugin(root *cobra.Command) {
	root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl fornax"}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.Example = strings.ReplaceAll(c.Example, "fornaxctl ", "kubectl fornax ")
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
