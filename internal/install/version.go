package install

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
)

// MinKubernetes is the oldest Kubernetes Fornax installs into: its admission
// policy is a ValidatingAdmissionPolicy of admissionregistration.k8s.io/v1
// (GA in 1.30), and the network CRDs validate with CEL's isCIDR and cidr(),
// which an API server accepts in a new CRD from 1.31 on.
const MinKubernetes = "1.31.0"

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
		return fmt.Errorf("this cluster runs Kubernetes %s; Fornax needs %s or newer (admissionregistration.k8s.io/v1 policies, CEL CIDR functions in its CRDs): upgrade the cluster first (nothing was changed)",
			gitVersion, MinKubernetes)
	}
	return nil
}
