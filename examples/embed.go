// Package examples holds sample manifests users apply as they are; the demo
// applies the same files.
package examples

import "embed"

// Missions are the sample missions of examples/missions, in file name order.
//
//go:embed missions/*.yaml
var Missions embed.FS

// Network is the sample VPC and subnets of examples/network.
//
//go:embed network/*.yaml
var Network embed.FS
