#!/usr/bin/env bash
# Builds every fuzz target in dataplane/fuzz with libFuzzer's coverage instrumentation (on
# the pinned stable toolchain, as cargo-fuzz would without a sanitizer) and runs each for a
# fixed number of inputs from a fixed seed, so the run is the same every time.
#   scripts/fuzz-smoke.sh              # what CI runs (through scripts/test-all.sh)
#   RUNS=0 SECONDS_EACH=300 scripts/fuzz-smoke.sh   # a longer, time-bounded session
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-2000000}
secs=${SECONDS_EACH:-0}
triple=$(rustc -vV | sed -n 's/^host: //p')
target_dir=target/fuzz
# An explicit --target keeps the instrumentation off build scripts and proc macros.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
  cargo build --quiet --release --bins --manifest-path dataplane/fuzz/Cargo.toml \
  --target "$triple" --target-dir "$target_dir"

for t in pdu_decode text_keys cdb_decode socket_messages; do
  corpus=$(mktemp -d)
  args=(-seed=1 -max_len=8192 -print_final_stats=0 "-artifact_prefix=$target_dir/$t-")
  if ((secs > 0)); then args+=("-max_total_time=$secs"); else args+=("-runs=$runs"); fi
  if ! "$target_dir/$triple/release/$t" "${args[@]}" "$corpus" >"$target_dir/$t.log" 2>&1; then
    echo "fuzz target $t failed; input saved next to $target_dir/$t-*" >&2
    tail -40 "$target_dir/$t.log" >&2
    rm -rf "$corpus"
    exit 1
  fi
  echo "fuzz $t: $(grep -o 'Done [0-9]* runs.*' "$target_dir/$t.log")"
  rm -rf "$corpus"
done
