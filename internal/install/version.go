package install

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
)

// MinKubernetes is the oldest Kubernetes Fornax installs into: its admission
// policy is a ValidatingAdmissionPolicy of admissionregistration.k8s.io/v1
// (GA in 1.30).
const MinKubernetes = "1.30.0"

// CheckVersion refuses an API server older than MinKubernetes, before
// anything is installed or a join token is spent.
func CheckVersion(d discovery.ServerVersionInterface) error {
	v, err := d.ServerVersion()
	if err != nil {
		return fmt.Errorf("asking the API server for its version: %w", err)
	}
	return checkVersion(v.GitVersion)
}

func checkVersion(gitVersion string) error {
	v, err := version.ParseGeneric(gitVersion)
	if err != nil {
		return fmt.Errorf("the API server's version %q: %w", gitVersion, err)
	}
	if v.LessThan(version.MustParseGeneric(MinKubernetes)) {
		return fmt.Errorf("this cluster runs Kubernetes %s; Fornax needs %s or newer (its admission policy is admissionregistration.k8s.io/v1): upgrade the cluster first (nothing was changed)",
			gitVersion, MinKubernetes)
	}
	return nil
}
