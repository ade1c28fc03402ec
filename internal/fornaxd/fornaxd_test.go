package fornaxd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, config string, args ...string) (Options, error) {
	t.Helper()
	if config != "" {
		path := filepath.Join(t.TempDir(), "fornaxd.yaml")
		if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	var got Options
	cmd := newCommand(func(_ context.Context, o Options) error { got = o; return nil })
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return got, err
}

func TestConfigFile(t *testing.T) {
	o, err := parse(t, "listen: \":7443\"\nreport-interval: 500ms\nadvertise: [hub.example.com, 10.0.0.1]\ncluster-name: root\n",
		"--cluster-name", "from-flag")
	if err != nil {
		t.Fatal(err)
	}
	if o.Listen != ":7443" || o.ReportInterval != 500*time.Millisecond || len(o.Advertise) != 2 || o.Advertise[1] != "10.0.0.1" {
		t.Errorf("config file not applied: %+v", o)
	}
	if o.ClusterName != "from-flag" {
		t.Errorf("the command line must win over the file: cluster name %q", o.ClusterName)
	}
	if o.HeartbeatInterval != time.Minute || o.QPS != 200 {
		t.Errorf("defaults lost: %+v", o)
	}
	if _, err := parse(t, "lisen: \":7443\"\n"); err == nil || !strings.Contains(err.Error(), `unknown setting "lisen"`) {
		t.Errorf("a misspelt setting: %v", err)
	}
	if _, err := parse(t, "report-interval: soon\n"); err == nil || !strings.Contains(err.Error(), "report-interval") {
		t.Errorf("a bad value: %v", err)
	}
}
