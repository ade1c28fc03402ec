package demo

import (
	"strings"
	"testing"
)

func TestNetPrefixNamesEachDemoApart(t *testing.T) {
	a, b := NetPrefix("/home/ada/fornax/.fornax/demo"), NetPrefix("/tmp/TestDemoUpDown123/001/demo")
	if a != NetPrefix("/home/ada/fornax/.fornax/demo") {
		t.Errorf("NetPrefix is not stable: %s, then %s", a, NetPrefix("/home/ada/fornax/.fornax/demo"))
	}
	if a == b {
		t.Errorf("two demo directories share the prefix %s", a)
	}
	for _, p := range []string{a, b} {
		// netlab's bridge names are the prefix and "-wan": 15 bytes at most.
		if len(p) > 8 {
			t.Errorf("prefix %s is longer than 8 bytes", p)
		}
		// netlab sweeps "fx<hex pid>-*" of dead processes: a demo's names
		// must never parse as that.
		if !strings.HasPrefix(p, "fxdm") {
			t.Errorf("prefix %s does not start with fxdm", p)
		}
	}
}

func TestNetworkWantedRefusesUnknownModes(t *testing.T) {
	var out strings.Builder
	if _, err := networkWanted(Options{Network: "yes", Out: &out}); err == nil || !strings.Contains(err.Error(), "want auto, on or off") {
		t.Errorf("--network yes: %v", err)
	}
	if on, err := networkWanted(Options{Network: NetworkOff, Out: &out}); on || err != nil {
		t.Errorf("--network off: %v, %v", on, err)
	}
}

func TestShowCommandShortensSecretsAndPaths(t *testing.T) {
	got := showCommand("/tmp/demo", []string{"join", "--kubeconfig", "/tmp/demo/eu/kubeconfig", "--token", "abcdef.0123456789abcdef",
		"--ca-hash", "sha256:0123456789abcdef0123", "--description", "demo: eu"})
	want := "join --kubeconfig eu/kubeconfig --token abcdef.… --ca-hash sha256:01234567… --description 'demo: eu'"
	if got != want {
		t.Errorf("showCommand:\n got %s\nwant %s", got, want)
	}
	if strings.Contains(got, "0123456789abcdef") {
		t.Error("the token's secret is shown")
	}
}
