package version

import "testing"

func TestStampedVersionWins(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v1.2.3"
	if got := Get(); got != "v1.2.3" {
		t.Errorf("Get() = %q with v1.2.3 stamped", got)
	}
	Version = ""
	if got := Get(); got == "" {
		t.Error("Get() is empty without a stamp; want the build's version or dev")
	}
}
