#!/usr/bin/env bash
# Builds hack/istio-ca (istiod's own CA code, see its doc comment) in a throwaway module that
# requires istio.io/istio, into the cache directory, and prints the binary's path. istio.io/istio is
# served by the module proxy only as pseudo-versions and has no replace directives, so a plain
# require works. The cache is keyed by the istio version and the program's source: later runs
# return at once.
set -euo pipefail

ISTIO_VERSION=${ISTIO_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}
here=$(cd "$(dirname "$0")" && pwd)
src="$here/istio-ca/main.go"
CACHE_ROOT=${MESHCERT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshcert-exporter}
sum=$(sha256sum "$src" | cut -c1-12)
OUT="$CACHE_ROOT/istio-ca-${ISTIO_VERSION}-${sum}"
if [ -x "$OUT/istio-ca" ]; then
  echo "$OUT/istio-ca"
  exit 0
fi
echo "build-istio-ca: building istio's CA code at ${ISTIO_VERSION} (first run only)" >&2
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/go.mod" <<MOD
module meshcert.invalid/istio-ca

go 1.26

require istio.io/istio ${ISTIO_VERSION}
MOD
cp "$src" "$work/main.go"
(cd "$work" && go mod tidy >/dev/null 2>&1 || (cd "$work" && go mod tidy))
(cd "$work" && CGO_ENABLED=0 go build -tags istioca -trimpath -ldflags "-s -w" -o "$OUT/istio-ca.tmp" .)
mv "$OUT/istio-ca.tmp" "$OUT/istio-ca"
echo "$OUT/istio-ca"
