#!/usr/bin/env bash
# Installs the real tools the tests use, once: promtool (Debian's prometheus package) and
# staticcheck (built into the cache directory). Prints nothing when everything is already there.
set -euo pipefail

CACHE_ROOT=${MESHCERT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshcert-exporter}
BIN="$CACHE_ROOT/bin"
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}
mkdir -p "$BIN"

apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install-tools: apt-get install $*" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v promtool >/dev/null 2>&1; then
  apt_install prometheus
fi

have=$("$BIN/staticcheck" -version 2>/dev/null || true)
if [[ "$have" != *"(${STATICCHECK_VERSION#v})"* ]]; then
  echo "install-tools: building staticcheck ${STATICCHECK_VERSION}" >&2
  GOBIN="$BIN" go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
fi
