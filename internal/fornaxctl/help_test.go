package fornaxctl

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Every command a user can run shows examples in its --help.
func TestEveryCommandHasExamples(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && !c.Hidden && c.Name() != "help" && strings.TrimSpace(c.Example) == "" {
			t.Errorf("%q has no examples in its --help", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewCommand())
}

// As the kubectl plugin, the help speaks of "kubectl fornax".
func TestKubectlPluginHelp(t *testing.T) {
	root := NewCommand()
	AsKubectlPlugin(root)
	var out strings.Builder
	root.SetOut(&out)
	root.SetArgs([]string{"get", "clusters", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kubectl fornax get clusters --tree") || strings.Contains(out.String(), "fornaxctl ") {
		t.Errorf("plugin help:\n%s", out.String())
	}
}
