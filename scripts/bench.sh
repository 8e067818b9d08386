#!/usr/bin/env bash
# Benchmarks and stress tests of the shipped builds (Cargo profile `dist`). Each prints its figures; none asserts
# a timing.
#
#   scripts/bench.sh speed [--short] [website-bench flags]
#       the speed suite: webhook throughput (wrk) and idle memory against a minimal webhook on the same stack;
#       latency the webhooks add at a real kube-apiserver against none; controller convergence time, writes and
#       memory for 1000 and 3000 Websites against a client making only the needed writes; writes while idle.
#       Prints every figure, then a table of ratios and targets. About 5 min; installs wrk with apt-get if
#       missing. --short: small sizes and release builds, to prove the command works in a few minutes (CI runs it).
#   scripts/bench.sh stress [--short] [webhook-stress flags]
#       the webhook under attack: 64 concurrent 3 MB reviews and 1000 slow-drip connections for 20 s while a
#       well-behaved client sends a review every 200 ms; prints peak memory, slow-drip cut-off times, failures.
#       --short: a 3 s pass with a tenth of the load on a release build, to prove the command works (CI runs it).
#
# Binaries go to $CARGO_TARGET_DIR (default: target/) and are built first.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
command=$1; shift
target=${CARGO_TARGET_DIR:-target}

# The attack opens over a thousand connections from this process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# wrk, the HTTP load generator of the speed suite: the Debian package, installed when missing.
ensure_wrk() {
  command -v wrk >/dev/null && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "wrk is not installed: install the Debian package (apt-get install wrk) as root, then rerun" >&2
    exit 1
  fi
  echo "[bench] installing wrk with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq >&2 && apt-get install -y -qq wrk >&2; }
}

# The measured binaries as they ship: the dist profile (fat LTO, minutes longer to build). A --short pass only proves
# that the command works, so it measures release builds instead.
profile=dist
for a in "$@"; do [ "$a" = --short ] && profile=release; done
case $command in
  speed)
    # The minimal webhook is built like the webhook it is the baseline of; the tools as release.
    cargo build --profile "$profile" --locked -q --bin website-webhook --bin website-controller --bin minimal-webhook
    cargo build --release --locked -q --bin website-bench
    ensure_wrk
    # The control-plane binaries of the latency and controller figures (cached after the first run).
    KUBEBUILDER_ASSETS=$(scripts/provision.sh | tail -n 1)
    export KUBEBUILDER_ASSETS
    "$target/release/website-bench" --bin-dir "$target/$profile" "$@"
    ;;
  stress)
    args=()
    for a in "$@"; do
      case $a in
        --short) args+=(--duration-secs 3 --large 8 --drips 100) ;;
        *) args+=("$a") ;;
      esac
    done
    cargo build --profile "$profile" --locked -q --bin website-webhook
    cargo build --release --locked -q --bin webhook-stress
    "$target/release/webhook-stress" --webhook "$target/$profile/website-webhook" "${args[@]}"
    ;;
  -h|--help|help) usage ;;
  *) printf 'unknown command %q\n' "$command" >&2; usage ;;
esac
