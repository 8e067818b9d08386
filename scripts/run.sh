#!/usr/bin/env bash
# Runs the whole Website operator on this machine: a local Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager), the Website CRD, the admission webhook and the controller.
#
#   scripts/run.sh          start everything and stay in the foreground; Ctrl-C stops it all
#   scripts/run.sh stop     stop a running instance (from another terminal)
#   scripts/run.sh status   tell whether one is running
#
# The first run provisions the control-plane binaries (about 10-15 minutes, see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-up}" in
  up) ;;
  stop|status) exec cargo run -q -p website-e2e --bin website-local -- "$1" ;;
  *) echo "usage: scripts/run.sh [up | stop | status]" >&2; exit 2 ;;
esac

assets=$(scripts/provision.sh | tail -n 1)
# The merged directory: binaries from $KUBEBUILDER_ASSETS where present, the rest provisioned.
export KUBEBUILDER_ASSETS=$assets
echo "[run] building the operator (cargo build --workspace --bins)" >&2
cargo build -q --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/debug/website-local" up
