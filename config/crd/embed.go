// Package crd embeds Fornax's CustomResourceDefinitions, generated from api/
// by controller-gen (`make generate`), so that binaries can install them.
package crd

import "embed"

// FS holds one YAML file per CRD.
//
//go:embed *.yaml
var FS embed.FS
