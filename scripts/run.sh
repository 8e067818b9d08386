#!/usr/bin/env bash
# Runs the whole Website operator on this machine: a local Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager), the Website CRD, the admission webhook and the controller.
#
#   scripts/run.sh              start everything and stay in the foreground; Ctrl-C stops it all
#   scripts/run.sh --with-node  the same plus a node (containerd, kubelet, kube-proxy, kube-scheduler; root only),
#                               so that Websites run as real pods, and a git server in a pod to serve them from
#   scripts/run.sh stop         stop a running instance (from another terminal); also removes what a killed
#                               node left behind
#   scripts/run.sh status       tell whether one is running
#
# The first run provisions the control-plane binaries (about 10-15 minutes, see README.md); the first run with
# --with-node also builds the node's binaries (about 5 more minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

node=()
case "${1:-up}" in
  up) [ "${2:-}" = --with-node ] && node=(--with-node) ;;
  --with-node) node=(--with-node) ;;
  stop|status) exec cargo run -q -p website-e2e --bin website-local -- "$1" ;;
  *) echo "usage: scripts/run.sh [up] [--with-node] | stop | status" >&2; exit 2 ;;
esac

assets=$(scripts/provision.sh "${node[@]}" | tail -n 1)
# The merged directory: binaries from $KUBEBUILDER_ASSETS where present, the rest provisioned.
export KUBEBUILDER_ASSETS=$assets
echo "[run] building the operator (cargo build --workspace --bins)" >&2
cargo build -q --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/debug/website-local" up "${node[@]}"
