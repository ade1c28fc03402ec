// Package deploy embeds the manifests that run fornaxd in a real cluster
// (kustomize directories: base, apply, hub, middle, agent, gateway), so that 'fornaxctl init --print'
// and 'join --print' emit them for GitOps, and renders them without kustomize.
package deploy

import (
	"bytes"
	"embed"
	"fmt"
	"path"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// FS holds the kustomize directories.
//
//go:embed base hub middle agent apply gateway
var FS embed.FS

// Options change what Render emits.
type Options struct {
	// Image replaces the fornaxd image ("" keeps ghcr.io/fornax-edge/fornax:latest).
	Image string
	// ClusterName replaces the hub's --cluster-name ("" keeps root).
	ClusterName string
	// Advertise replaces the hub's --advertise ("" keeps the example host).
	Advertise string
}

// DefaultImage is the image the manifests name.
const DefaultImage = "ghcr.io/fornax-edge/fornax:latest"

// release is a release version: vMAJOR.MINOR.PATCH, nothing after.
var release = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)

// ImageFor is the image of a Fornax release (the version fornaxctl was built
// as), so that the printed manifests run the fornaxd that matches it; a
// development build gets DefaultImage.
func ImageFor(version string) string {
	if release.MatchString(version) {
		return strings.TrimSuffix(DefaultImage, ":latest") + ":" + version
	}
	return DefaultImage
}

// Render returns the manifests of a kustomize directory ("hub" or "agent"),
// its resources in order and directories expanded, as one YAML stream: what
// 'kubectl kustomize config/deploy/<dir>' prints, give or take formatting.
func Render(dir string, o Options) ([]byte, error) {
	docs, err := resources(dir, 0)
	if err != nil {
		return nil, err
	}
	out := bytes.Join(docs, []byte("---\n"))
	replace := func(old, new string) {
		if new != "" {
			out = bytes.ReplaceAll(out, []byte(old), []byte(new))
		}
	}
	replace("image: "+DefaultImage, "image: "+o.Image)
	replace("--cluster-name=root", "--cluster-name="+o.ClusterName)
	replace("--advertise=fornax-hub.example.com", "--advertise="+o.Advertise)
	return out, nil
}

func resources(dir string, depth int) ([][]byte, error) {
	if depth > 4 {
		return nil, fmt.Errorf("config/deploy/%s: kustomizations nested too deep", dir)
	}
	raw, err := FS.ReadFile(path.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, fmt.Errorf("no kustomization in config/deploy/%s: %w", dir, err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("config/deploy/%s/kustomization.yaml: %w", dir, err)
	}
	var out [][]byte
	for _, r := range k.Resources {
		p := path.Clean(path.Join(dir, r))
		if !strings.HasSuffix(p, ".yaml") {
			sub, err := resources(p, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		b, err := FS.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("config/deploy/%s: %w", dir, err)
		}
		out = append(out, b)
	}
	return out, nil
}
