#!/usr/bin/env bash
# Installs what stackproof needs from the system's package manager (Debian):
# nginx for the gateway, shellcheck for the workflow lint. The Go toolchain must already be there (it builds
# Cortex, VictoriaLogs and Prometheus from their published Go modules).
set -euo pipefail

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
# shellcheck: actionlint runs it over the CI workflows' shell steps (tests/test_ci_workflows.py)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
if [ ${#need[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "stackproof: please install: ${need[*]} (no apt-get here)" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "[stackproof] installing ${need[*]} with apt-get" >&2
  $sudo apt-get update -qq
  # the package's own service must not start: stackproof runs nginx itself
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v go >/dev/null 2>&1; then
  echo "stackproof: the Go toolchain is missing ('go' is not on PATH); it builds Cortex, VictoriaLogs and Prometheus" >&2
  exit 1
fi
