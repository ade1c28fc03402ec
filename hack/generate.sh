#!/usr/bin/env bash
# generate.sh produces every generated file from its source:
#   api/**/zz_generated.deepcopy.go and config/crd/*.yaml  (controller-gen, from api/)
#   internal/link/linkpb/*.pb.go                            (buf + protoc-gen-go[-grpc], from proto/)
# With --verify it generates into a scratch copy instead and fails, naming the
# files, if the committed ones differ.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${FORNAX_BIN:-$root/bin}
for t in controller-gen buf protoc-gen-go protoc-gen-go-grpc; do
  [[ -x "$bin/$t" ]] || { echo "generate.sh: $bin/$t not found: run 'make tools'" >&2; exit 1; }
done
export PATH="$bin:$PATH"

gen() { # gen SRC OUT: generate from the sources under SRC into the tree OUT
  (cd "$2" &&
    controller-gen object paths=./api/... &&
    controller-gen crd:maxDescLen=400 paths=./api/... output:crd:artifacts:config=config/crd)
  (cd "$1/proto" && buf generate --template buf.gen.yaml -o "$2")
}

if [[ "${1:-}" != --verify ]]; then
  gen "$root" "$root"
  exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp "$root/go.mod" "$root/go.sum" "$scratch/"
cp -r "$root/api" "$scratch/api"
mkdir -p "$scratch/config/crd"
gen "$root" "$scratch"
stale=0
for f in $(cd "$scratch" && find api config/crd internal -type f \( -name 'zz_generated*' -o -name '*.yaml' -o -name '*.pb.go' \) | sort); do
  if ! cmp -s "$scratch/$f" "$root/$f"; then
    echo "generated file out of date: $f" >&2
    stale=1
  fi
done
for f in $(cd "$root" && find config/crd -name '*.yaml'; find internal -name '*.pb.go'); do
  [[ -f "$scratch/$f" ]] || { echo "generated file no longer produced: $f" >&2; stale=1; }
done
if ((stale)); then
  echo "Run 'make generate' and commit the result." >&2
  exit 1
fi
echo "generated files are up to date"
