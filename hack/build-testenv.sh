#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver and etcd) from the Go module proxy into a cache
# directory keyed by version, and prints that directory. Only the first run pays for the build
# (about 25 minutes and 2.5 GB of memory on 2 cores); later runs find the stamped binaries and return
# at once. Neither k8s.io/kubernetes nor etcd's server can be `go install`ed (replace directives), so
# each is built from a throwaway module that pins its staging modules to the published versions.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
CACHE_ROOT=${MESHCERT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshcert-exporter}
OUT="$CACHE_ROOT/testenv-k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
mkdir -p "$OUT"

log() { echo "build-testenv: $*" >&2; }

staging_minor=${K8S_VERSION#v1.}       # 37.2
staging_version="v0.${staging_minor}"  # v0.37.2
major=1
minor=${staging_minor%%.*}

build_apiserver() {
  # Capture first: with pipefail, grep -q closing the pipe early would fail the check.
  local have=""
  [ -x "$OUT/kube-apiserver" ] && have=$("$OUT/kube-apiserver" --version 2>/dev/null || true)
  if [ "$have" = "Kubernetes ${K8S_VERSION}" ]; then
    return
  fi
  log "building kube-apiserver ${K8S_VERSION} (first run only; this takes a while)"
  local work; work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || { log "cannot find go.mod of k8s.io/kubernetes@${K8S_VERSION}"; exit 1; }
  {
    echo "module meshcert.invalid/testenv-apiserver"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    echo
    # Every staging module that k8s.io/kubernetes requires at v0.0.0 is published as v0.<minor>.<patch>.
    awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$gomod" | sort -u | while read -r m; do
      echo "replace $m => $m ${staging_version}"
    done
  } >"$work/go.mod"
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
  (cd "$work" && go mod tidy >/dev/null 2>&1 || (cd "$work" && go mod tidy))
  local pkgs="k8s.io/component-base/version k8s.io/client-go/pkg/version" ldflags="-s -w"
  for p in $pkgs; do
    ldflags="$ldflags -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=${major} -X $p.gitMinor=${minor} -X $p.gitTreeState=clean"
  done
  (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$OUT/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
}

build_etcd() {
  local have=""
  [ -x "$OUT/etcd" ] && have=$("$OUT/etcd" --version 2>/dev/null || true)
  if [[ "$have" == *"etcd Version: ${ETCD_VERSION#v}"* ]]; then
    return
  fi
  log "building etcd ${ETCD_VERSION} (first run only)"
  local work; work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  cat >"$work/go.mod" <<MOD
module meshcert.invalid/testenv-etcd

go 1.26

require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
MOD
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$work" && go mod tidy >/dev/null)
  (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$OUT/etcd.tmp" "$OUT/etcd"
}

build_etcd
build_apiserver
echo "$OUT"
