#!/usr/bin/env bash
# Runs every test of the Website operator: formatting and lints, unit tests, and the end-to-end tests
# against a real local control plane (provisioned first; see README.md for what the first run costs).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n[test] %s\n' "$*" >&2; }

step "provisioning the control-plane and node binaries"
assets=$(scripts/provision.sh --with-node | tail -n 1)
# The merged directory: binaries from $KUBEBUILDER_ASSETS where present, the rest provisioned.
export KUBEBUILDER_ASSETS=$assets

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building the binaries the end-to-end tests run"
cargo build --workspace --bins --locked

step "cargo test (unit, HTTP/TLS, and end-to-end against kube-apiserver)"
cargo test --workspace --locked "$@"

if [ $# -eq 0 ]; then
  step "short passes of the benchmark and stress commands (they print figures and assert none)"
  scripts/bench.sh stress --short
  scripts/bench.sh speed --short

  step "a short, bounded fuzzing pass (scripts/fuzz.sh runs 1,000,000 inputs per target)"
  scripts/fuzz.sh --short
fi
