#!/usr/bin/env bash
# Installs what stackproof needs from the system's package manager (Debian):
# nginx for the gateway, shellcheck for the workflow lint, containerd (with runc and the CNI plugins) for the
# cluster on this machine, busybox-static, gcc and libc6-dev for its images (harness/images.py). The Go
# toolchain must already be there (it builds Cortex, VictoriaLogs and Prometheus from their published Go modules).
set -euo pipefail

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
# shellcheck: actionlint runs it over the CI workflows' shell steps (tests/test_ci_workflows.py)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
# the cluster on this machine: a containerd of the harness's own (harness/cluster/containerd.py)
command -v containerd >/dev/null 2>&1 || need+=(containerd)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
# the node's network guard and kube-proxy's nftables mode (nft), the node's namespaces (unshare, nsenter)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need+=(iproute2)
# its images: busybox for the tools image and the gateway's /bin/sh, gcc and libc6-dev for a static pause
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || need+=(busybox-static)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
[ -f "/usr/lib/$(uname -m)-linux-gnu/libc.a" ] || need+=(libc6-dev)
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
