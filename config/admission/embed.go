// Package admission embeds the ValidatingAdmissionPolicies installed with
// Fornax's CRDs: checks written in CEL that CRD schemas cannot express.
package admission

import "embed"

// FS holds the policy and binding manifests.
//
//go:embed *.yaml
var FS embed.FS
