#!/usr/bin/env bash
# build.sh builds the pinned third-party binaries Fornax tests and demos run
# (Kubernetes control plane, kubectl, etcd, kine, kwok, controller-gen) from
# source, through the Go module proxy, into bin/.
#
# Each tool lives in its own Go module under hack/tools/<module>/ so the product's
# go.mod stays clean and one tool's requirements cannot clash with another's.
# A tool is rebuilt only when its pin changes: the cache key is a hash of the
# module's go.mod and go.sum, the link flags and the Go version. Finished binaries
# are kept under ${FORNAX_TOOLS_CACHE:-~/.cache/fornax/tools}/<key>/ so that a
# fresh clone on the same machine (CI) copies them instead of rebuilding.
#
# Usage: hack/tools/build.sh [tool...]   (default: all tools)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bindir=${FORNAX_BIN:-$root/bin}
cache=${FORNAX_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fornax/tools}

# The Kubernetes release is the k8s.io/kubernetes requirement in
# hack/tools/kubernetes/go.mod: the one place it is pinned.
KUBE_VERSION=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$root/hack/tools/kubernetes/go.mod")
[[ -n "$KUBE_VERSION" ]] || { echo "build.sh: no 'require k8s.io/kubernetes' line in hack/tools/kubernetes/go.mod" >&2; exit 1; }

# tool -> "module dir|package|cgo". Everything builds static (kine uses its pure-Go SQLite
# driver when cgo is off), so no C toolchain is needed.
declare -A spec=(
  [kube-apiserver]="kubernetes|k8s.io/kubernetes/cmd/kube-apiserver|0"
  [kube-controller-manager]="kubernetes|k8s.io/kubernetes/cmd/kube-controller-manager|0"
  [kube-scheduler]="kubernetes|k8s.io/kubernetes/cmd/kube-scheduler|0"
  [kubectl]="kubernetes|k8s.io/kubernetes/cmd/kubectl|0"
  [etcd]="etcd|go.etcd.io/etcd/server/v3|0"
  [kine]="kine|github.com/k3s-io/kine|0"
  [kwok]="kwok|sigs.k8s.io/kwok/cmd/kwok|0"
  [controller-gen]="controller-gen|sigs.k8s.io/controller-tools/cmd/controller-gen|0"
  [golangci-lint]="golangci-lint|github.com/golangci/golangci-lint/v2/cmd/golangci-lint|0"
  [buf]="buf|github.com/bufbuild/buf/cmd/buf|0"
  [protoc-gen-go]="protoc-gen-go|google.golang.org/protobuf/cmd/protoc-gen-go|0"
  [protoc-gen-go-grpc]="protoc-gen-go-grpc|google.golang.org/grpc/cmd/protoc-gen-go-grpc|0"
)
order=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kine kwok controller-gen golangci-lint buf protoc-gen-go protoc-gen-go-grpc)

die() { echo "build.sh: $*" >&2; exit 1; }

check_go() {
  command -v go >/dev/null 2>&1 || die "Go is not installed or not on PATH. Install Go 1.26 or newer from https://go.dev/dl/ and retry."
  local v
  v=$(go env GOVERSION) || die "'go env GOVERSION' failed; is the Go installation broken?"
  v=${v#go}
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%.*}
  if (( major < 1 || (major == 1 && minor < 26) )); then
    die "Go $v is too old: Kubernetes ${KUBE_VERSION} needs Go 1.26 or newer. Install a newer Go from https://go.dev/dl/ and retry."
  fi
}

check_proxy() {
  # A hung download is the worst failure: give the proxy a short, bounded probe.
  local proxy
  proxy=$(go env GOPROXY)
  proxy=${proxy%%,*}
  case "$proxy" in off|direct|"") return 0 ;; esac
  if command -v curl >/dev/null 2>&1; then
    if ! curl -fsS -m 20 -o /dev/null "$proxy/k8s.io/kubernetes/@v/${KUBE_VERSION}.info"; then
      die "cannot reach the Go module proxy $proxy within 20s. Check the network or set GOPROXY to a reachable proxy, then retry."
    fi
  fi
}

ldflags_for() {
  local mod=$1
  case "$mod" in
    kubernetes)
      local minor=${KUBE_VERSION#v1.}
      minor=${minor%%.*}
      local date
      date=$(go list -m -modfile "$root/hack/tools/kubernetes/go.mod" -f '{{.Time}}' k8s.io/kubernetes 2>/dev/null | cut -c1-19 | tr ' ' T || true)
      [[ -n "$date" && "$date" != "<nil>" ]] || date=1970-01-01T00:00:00
      local f="-s -w"
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        f+=" -X $pkg.gitVersion=${KUBE_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
        f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${date}Z"
      done
      echo "$f"
      ;;
    etcd) echo "-s -w" ;;
    kine)
      local v
      v=$(cd "$root/hack/tools/kine" && go list -m -f '{{.Version}}' github.com/k3s-io/kine)
      echo "-s -w -X github.com/k3s-io/kine/pkg/version.Version=${v}"
      ;;
    *) echo "-s -w" ;;
  esac
}

# cache_key names one build of a module: its pins, how it is linked and the toolchain.
cache_key() {
  local mod=$1 cgo=$2
  {
    cat "$root/hack/tools/$mod/go.mod" "$root/hack/tools/$mod/go.sum"
    ldflags_for "$mod"
    echo "cgo=$cgo"
    go env GOVERSION GOOS GOARCH
  } | sha256sum | cut -c1-16
}

build_one() {
  local tool=$1
  [[ -n "${spec[$tool]:-}" ]] || die "unknown tool '$tool'; known: ${order[*]}"
  IFS='|' read -r mod pkg cgo <<<"${spec[$tool]}"
  local key dir
  key=$(cache_key "$mod" "$cgo")
  dir="$cache/$mod-$key"
  if [[ -x "$bindir/$tool" && -f "$bindir/.$tool.key" && "$(cat "$bindir/.$tool.key")" == "$key" ]]; then
    printf '  %-24s up to date\n' "$tool"
    return 0
  fi
  if [[ ! -x "$dir/$tool" ]]; then
    printf '  %-24s building %s ...\n' "$tool" "$pkg"
    local start=$SECONDS
    mkdir -p "$dir"
    # Build to a temporary name so an interrupted build never leaves a half binary behind.
    (cd "$root/hack/tools/$mod" &&
      CGO_ENABLED=$cgo go build -trimpath -ldflags "$(ldflags_for "$mod")" -o "$dir/.$tool.tmp" "$pkg") ||
      die "building $tool ($pkg) failed; see the Go output above."
    mv "$dir/.$tool.tmp" "$dir/$tool"
    printf '  %-24s built in %ds\n' "$tool" $((SECONDS - start))
  else
    printf '  %-24s from cache %s\n' "$tool" "$dir"
  fi
  mkdir -p "$bindir"
  cp -f "$dir/$tool" "$bindir/.$tool.tmp" && mv -f "$bindir/.$tool.tmp" "$bindir/$tool"
  echo "$key" >"$bindir/.$tool.key"
}

# kwok_stages assembles the kwok Stage configuration the harness runs kwok with
# from the pinned kwok module: node initialisation, node heartbeat with lease,
# and pod ready/complete/delete. kwok refuses an empty YAML document, so the
# files are joined with exactly one separator between documents.
kwok_stages() {
  local src out=$bindir/kwok-stages.yaml
  src=$(cd "$root/hack/tools/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) ||
    die "cannot locate the kwok module; run 'go mod download' in hack/tools/kwok"
  local files=(
    kustomize/stage/node/fast/node-initialize.yaml
    kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
    kustomize/stage/pod/fast/pod-ready.yaml
    kustomize/stage/pod/fast/pod-complete.yaml
    kustomize/stage/pod/fast/pod-delete.yaml
  )
  mkdir -p "$bindir"
  {
    local first=1 f
    for f in "${files[@]}"; do
      [[ -f "$src/$f" ]] || die "kwok stage $f is missing from $src"
      ((first)) || echo "---"
      first=0
      sed -e '/^---[[:space:]]*$/d' "$src/$f"
    done
  } >"$bindir/.kwok-stages.tmp"
  mv "$bindir/.kwok-stages.tmp" "$out"
}

main() {
  check_go
  local tools=("$@")
  ((${#tools[@]})) || tools=("${order[@]}")
  local need=0 t
  for t in "${tools[@]}"; do
    [[ -n "${spec[$t]:-}" ]] || die "unknown tool '$t'; known: ${order[*]}"
    IFS='|' read -r mod _ cgo <<<"${spec[$t]}"
    [[ -x "$cache/$mod-$(cache_key "$mod" "$cgo")/$t" ]] || need=1
  done
  if ((need)); then
    check_proxy
    echo "Building pinned tools into $bindir (a cold build takes about 15 minutes on 2 cores; later runs reuse $cache)"
  fi
  local start=$SECONDS
  for t in "${tools[@]}"; do
    build_one "$t"
    [[ "$t" != kwok ]] || kwok_stages
  done
  echo "tools ready in $((SECONDS - start))s: Kubernetes ${KUBE_VERSION} binaries in $bindir"
}

main "$@"; exit
