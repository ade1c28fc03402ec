package deploy

import "testing"

func TestImageForARelease(t *testing.T) {
	for version, want := range map[string]string{
		"v0.3.0": "ghcr.io/fornax-edge/fornax:v0.3.0",
		"v0.0.0-20261121133542-40d263c1f2a3+dirty": DefaultImage,
		"dev":         DefaultImage,
		"v0.3.0-rc.1": DefaultImage,
	} {
		if got := ImageFor(version); got != want {
			t.Errorf("ImageFor(%q) = %q, want %q", version, got, want)
		}
	}
}
