#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the webhook's request parsing and admission rules and of
# the gitRepo parser. The targets and what each checks: fuzz/fuzz_targets/*.rs.
#
#   scripts/fuzz.sh [RUNS] [TARGET...]
#       runs every target (or those named) for RUNS inputs each (default 1000000); prints per target the runs
#       done, executions per second, time and whether it crashed. Exits 1 when a target crashed (a panic, a
#       timeout of 10 s on one input, or running out of memory), printing the panic and the saved input.
#   scripts/fuzz.sh --short [TARGET...]
#       a bounded pass of 20000 inputs per target, to prove the command works (CI runs it).
#
# Uses the nightly toolchain (`cargo +nightly`) when there is one, else the default toolchain; installs cargo-fuzz
# from crates.io when it is missing.
# Builds are cached in $FUZZ_TARGET_DIR (default ~/.cache/website-operator/fuzz-target). Nothing is written to
# the repository: each target's corpus grows in $FUZZ_CACHE_DIR/corpus/TARGET (default
# ~/.cache/website-operator/fuzz), seeded read-only from fuzz/corpus/TARGET, and a crashing input is saved to
# $FUZZ_CACHE_DIR/artifacts/TARGET/. Replay one with
#   cargo +nightly fuzz run --fuzz-dir fuzz -s none --target-dir "$FUZZ_TARGET_DIR" TARGET ARTIFACT
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

runs=1000000
case ${1:-} in
  --short) runs=20000; shift ;;
  -h|--help|help) usage ;;
  -*) printf 'fuzz: unknown option %q\n' "$1" >&2; usage ;;
  ''|*[!0-9]*) ;; # no argument, or a target's name
  *) runs=$1; shift ;;
esac
[ "$runs" -gt 0 ] 2>/dev/null || usage

all_targets=()
for file in fuzz/fuzz_targets/*.rs; do
  all_targets+=("$(basename "$file" .rs)")
done
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for target in "${targets[@]}"; do
  [ -f "fuzz/fuzz_targets/$target.rs" ] || { echo "fuzz: no target $target; targets: ${all_targets[*]}" >&2; exit 2; }
done

cache=${XDG_CACHE_HOME:-$HOME/.cache}/website-operator
target_dir=${FUZZ_TARGET_DIR:-$cache/fuzz-target}
work=${FUZZ_CACHE_DIR:-$cache/fuzz}

# cargo-fuzz is made for nightly; without a sanitizer (below) the stable toolchain works too, with the same
# coverage-guided libFuzzer, so a machine without nightly still fuzzes.
toolchain=+nightly
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain; using the default one (no sanitizer is used anyway)" >&2
  toolchain=
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version '^0.13'
fi

# The Rust code here forbids `unsafe`: the fuzzers look for panics, wrong answers and slow inputs, which need no
# sanitizer. Without AddressSanitizer each input runs about twice as fast. Debug assertions and overflow checks
# stay on (cargo-fuzz's default). The same flags for build and run, so that run finds the build up to date.
fuzz_flags=(--fuzz-dir fuzz -s none --target-dir "$target_dir")

echo "fuzz: building ${targets[*]} ($target_dir)"
started=$SECONDS
# cargo fuzz builds one target or all of them: all share their dependencies, so build all unless one is named.
build=()
[ ${#targets[@]} -eq 1 ] && build=("${targets[0]}")
cargo $toolchain fuzz build "${fuzz_flags[@]}" "${build[@]}"
echo "fuzz: built in $(( SECONDS - started )) s"

# libFuzzer's final stat line `stat::NAME: VALUE` from a log.
stat() { sed -n "s/^stat::$1: *//p" "$2" | tail -n 1; }

failed=0
summary=()
for target in "${targets[@]}"; do
  corpus=$work/corpus/$target
  artifacts=$work/artifacts/$target
  log=$work/logs/$target.log
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  args=(-runs="$runs" -max_len=4096 -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts/")
  [ -f "fuzz/dict/$target.dict" ] && args+=(-dict="fuzz/dict/$target.dict")
  echo "fuzz: $target: $runs runs (log: $log)"
  started=$(date +%s%N)
  status=0
  cargo $toolchain fuzz run "${fuzz_flags[@]}" "$target" "$corpus" "fuzz/corpus/$target" -- "${args[@]}" \
    >"$log" 2>&1 || status=$?
  ms=$(( ($(date +%s%N) - started) / 1000000 ))
  done_runs=$(stat number_of_executed_units "$log")
  # exec/s over the whole run, cargo's up-to-date check and the corpus loading included.
  line=$(printf '%-18s runs %9s  exec/s %7s  time %4d.%01d s  corpus +%s' "$target" "${done_runs:-?}" \
    "$(( ${done_runs:-0} * 1000 / (ms > 0 ? ms : 1) ))" $(( ms / 1000 )) $(( ms % 1000 / 100 )) \
    "$(stat new_units_added "$log")")
  if [ "$status" -eq 0 ]; then
    summary+=("$line  crash: none")
  else
    failed=$(( failed + 1 ))
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    summary+=("$line  CRASH: ${artifact:-no input saved, see $log}")
    {
      echo "fuzz: $target failed (exit $status). Its panic, or libFuzzer's error (all of it in $log):"
      sed -n '/panicked at/,/^stack backtrace:/p; /ERROR: libFuzzer/p' "$log" | grep -v '^stack backtrace:' | head -n 20
      if [ -n "$artifact" ]; then
        echo "fuzz: the input: $artifact; replay it with"
        echo "  cargo $toolchain fuzz run ${fuzz_flags[*]} $target $artifact"
      fi
    } >&2
  fi
  echo "${summary[-1]}"
done

echo
echo "fuzz: summary ($runs runs per target)"
printf '  %s\n' "${summary[@]}"
echo "fuzz: $(( ${#targets[@]} - failed )) passed, $failed failed"
[ "$failed" -eq 0 ]
