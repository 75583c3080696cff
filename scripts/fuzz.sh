#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang++-14, AddressSanitizer + UBSan, only the parser
# sources) in build-fuzz and runs each for a bounded time, two at a time (one per core), from the
# seeds in tests/fuzz/seeds plus what earlier runs in build-fuzz found. A crash, leak, timeout or
# out-of-memory fails the script, which prints the reproducer and how to replay it.
# Usage: scripts/fuzz.sh [target...]   (targets: safetensors npy image; default all)
# Environment: FUZZ_SECONDS per target (default 60), FUZZ_JOBS parallel runs (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-2}
targets=("$@")
if ((${#targets[@]} == 0)); then targets=(safetensors npy image); fi
build="build-fuzz"

if ! command -v clang++-14 >/dev/null; then
  echo "fuzz.sh needs clang++-14 and libFuzzer (packages clang-14 libclang-rt-14-dev)" >&2
  exit 1
fi
cmake -S tests/fuzz -B "$build" -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
cmake --build "$build" -j2 >/dev/null

# image: a header whose pixel count slips past max_pixels (1 << 20 in the target) shows up as an
# allocation far over the 12 MB a capped image needs.
options_for() {
  case "$1" in
    image) echo "-malloc_limit_mb=256 " ;;
  esac
}

run() {
  local target=$1 dir="$build/runs/$1" rc=0
  rm -rf "$dir/artifacts" "$dir/rc"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  # New inputs go to the first corpus folder, so the seeds stay untouched.
  # shellcheck disable=SC2046  # the options are single words
  "$build/fuzz_$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -dict="tests/fuzz/$target.dict" -artifact_prefix="$dir/artifacts/" -print_final_stats=1 \
    $(options_for "$target") "$dir/corpus" "tests/fuzz/seeds/$target" >"$dir/log" 2>&1 || rc=$?
  echo "$rc" >"$dir/rc"
}

start=$SECONDS
running=0
for target in "${targets[@]}"; do
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
  run "$target" &
  running=$((running + 1))
done
wait

status=0
for target in "${targets[@]}"; do
  dir="$build/runs/$target"
  artifacts=$(find "$dir/artifacts" -type f)
  if [[ "$(cat "$dir/rc")" == 0 && -z "$artifacts" ]]; then
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log")
    coverage=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$dir/log" | tail -1 || true)
    echo "fuzz $target: ok, $executions inputs in ${seconds} s ($coverage)"
    continue
  fi
  status=1
  echo "fuzz $target: FAILED (exit $(cat "$dir/rc")); log: $dir/log"
  grep -E '^==[0-9]+== ?ERROR|^fuzz check failed|what\(\)|^SUMMARY' "$dir/log" | head -10 || true
  for artifact in $artifacts; do
    echo "  reproducer: $artifact"
    echo "  replay:     $build/fuzz_$target $(options_for "$target")$artifact"
  done
done
echo "fuzzing took $((SECONDS - start)) s"
exit $status
