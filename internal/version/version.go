// Package version says which build of Fornax is running: the release
// stamped at link time (make build and the image set it from git describe),
// else the module version the Go toolchain records from the checkout
// (a pseudo-version with the commit, "+dirty" for uncommitted changes).
package version

import "runtime/debug"

// Version is set at link time:
//
//	-ldflags "-X github.com/fornax-edge/fornax/internal/version.Version=v0.3.0"
var Version = ""

// Get returns the version of this binary, "dev" when nothing says.
func Get() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
