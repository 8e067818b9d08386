#!/usr/bin/env bash
# Benchmarks and stress tests of release builds. Each prints its figures; none asserts a timing.
#
#   scripts/bench.sh stress [--short] [webhook-stress flags]
#       the webhook under attack: 64 concurrent 3 MB reviews and 1000 slow-drip connections for 20 s while a
#       well-behaved client sends a review every 200 ms; prints peak memory, slow-drip cut-off times, failures.
#       --short: a 3 s pass with a tenth of the load, to prove the command works (CI runs it).
#
# Binaries go to $CARGO_TARGET_DIR (default: target/) and are built first.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
command=$1; shift
target=${CARGO_TARGET_DIR:-target}

# The attack opens over a thousand connections from this process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

case $command in
  stress)
    args=()
    for a in "$@"; do
      case $a in
        --short) args+=(--duration-secs 3 --large 8 --drips 100) ;;
        *) args+=("$a") ;;
      esac
    done
    cargo build --release --locked -q -p website-webhook -p website-bench
    "$target/release/webhook-stress" --webhook "$target/release/website-webhook" "${args[@]}"
    ;;
  -h|--help|help) usage ;;
  *) printf 'unknown command %q\n' "$command" >&2; usage ;;
esac
