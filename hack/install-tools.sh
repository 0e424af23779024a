#!/usr/bin/env bash
# Installs the real tools the tests use, once: prometheus, promtool and alertmanager (Debian's
# prometheus and prometheus-alertmanager packages), openssl, podman, runc and chromium (Debian's: the
# browser the /pki page is tested in), staticcheck, helm and
# smallstep's step CLI (built from the Go module proxy into the cache directory: helm takes about
# ten minutes the first time, step a few). Prints nothing when everything is already there.
set -euo pipefail

CACHE_ROOT=${MESHCERT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshcert-exporter}
BIN="$CACHE_ROOT/bin"
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
STEP_VERSION=${STEP_VERSION:-v0.30.6}
mkdir -p "$BIN"

apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "install-tools: apt-get install $*" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi

have=$("$BIN/staticcheck" -version 2>/dev/null || true)
if [[ "$have" != *"(${STATICCHECK_VERSION#v})"* ]]; then
  echo "install-tools: building staticcheck ${STATICCHECK_VERSION}" >&2
  GOBIN="$BIN" go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
fi

have=$("$BIN/helm" version --template '{{.Version}}' 2>/dev/null || true)
if [ "$have" != "$HELM_VERSION" ]; then
  echo "install-tools: building helm ${HELM_VERSION} (first run only; about ten minutes)" >&2
  GOBIN="$BIN" go install -ldflags "-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
fi

# The step CLI makes Linkerd's PKI in the tests exactly as Linkerd's docs make it.
have=$("$BIN/step" version 2>/dev/null | head -n 1 || true)
if [[ "$have" != *"${STEP_VERSION#v}"* ]]; then
  echo "install-tools: building step ${STEP_VERSION} (first run only)" >&2
  GOBIN="$BIN" go install -ldflags "-X main.Version=${STEP_VERSION#v}" "github.com/smallstep/cli/cmd/step@${STEP_VERSION}"
fi

# pint lints the alert rules. The module proxy serves v0.87.0 but refuses the version list that
# `go install ...@v0.87.0` asks for, so it is built from a throwaway module, like the control plane.
PINT_VERSION=${PINT_VERSION:-v0.87.0}
have=$("$BIN/pint" version 2>/dev/null || true)
if [[ "$have" != *"${PINT_VERSION}"* ]]; then
  echo "install-tools: building pint ${PINT_VERSION} (first run only)" >&2
  work=$(mktemp -d)
  printf 'module meshcert.invalid/pint\n\ngo 1.26\n\nrequire github.com/cloudflare/pint %s\n' "$PINT_VERSION" >"$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/cloudflare/pint/cmd/pint"\n' >"$work/tools.go"
  (cd "$work" && go mod tidy >/dev/null 2>&1 || (cd "$work" && go mod tidy))
  (cd "$work" && CGO_ENABLED=0 go build -ldflags "-X main.version=${PINT_VERSION}" -o "$BIN/pint" github.com/cloudflare/pint/cmd/pint)
  rm -rf "$work"
fi
