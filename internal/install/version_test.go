package install

import (
	"strings"
	"testing"
)

func TestCheckVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"v1.37.1":       true,
		"v1.31.0":       true,
		"v1.31.4+k3s1":  true,
		"v1.30.9":       false,
		"v1.28.15+k3s1": false,
	} {
		err := checkVersion(v)
		if (err == nil) != ok {
			t.Errorf("checkVersion(%s) = %v, want ok %t", v, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "upgrade the cluster first") {
			t.Errorf("checkVersion(%s): %v does not say what to do", v, err)
		}
	}
	if err := checkVersion("not-a-version"); err == nil {
		t.Error("an unparsable version passed")
	}
}
