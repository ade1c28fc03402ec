#!/usr/bin/env bash
# generate.sh runs controller-gen over api/ to produce the deepcopy code next to
# the types and the CRDs under config/crd/. With --verify it generates into a
# scratch copy instead and fails, naming the files, if the committed ones differ.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cg=${FORNAX_BIN:-$root/bin}/controller-gen
[[ -x "$cg" ]] || { echo "generate.sh: $cg not found: run 'make tools'" >&2; exit 1; }

gen() { # gen DIR: generate inside the module tree rooted at DIR
  (cd "$1" &&
    "$cg" object paths=./api/... &&
    "$cg" crd:maxDescLen=400 paths=./api/... output:crd:artifacts:config=config/crd)
}

if [[ "${1:-}" != --verify ]]; then
  gen "$root"
  exit 0
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp "$root/go.mod" "$root/go.sum" "$scratch/"
cp -r "$root/api" "$scratch/api"
mkdir -p "$scratch/config/crd"
gen "$scratch"
stale=0
for f in $(cd "$scratch" && find api config/crd -type f \( -name 'zz_generated*' -o -name '*.yaml' \) | sort); do
  if ! cmp -s "$scratch/$f" "$root/$f"; then
    echo "generated file out of date: $f" >&2
    stale=1
  fi
done
for f in $(cd "$root" && find config/crd -type f -name '*.yaml' | sort); do
  [[ -f "$scratch/$f" ]] || { echo "generated file no longer produced: $f" >&2; stale=1; }
done
if ((stale)); then
  echo "Run 'make generate' and commit the result." >&2
  exit 1
fi
echo "generated files are up to date"
