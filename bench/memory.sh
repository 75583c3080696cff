#!/usr/bin/env bash
# Peak memory and time of one image against --size: `vitscope run IMAGE --size N` with every
# default view; the same with whole attention maps kept and written (--save-attention, the budget
# set high; up to MAX_WHOLE pixels); and with no attention at all. Peak resident size from
# /usr/bin/time (GNU time), wall time as it measures it. One run per cell: at these sizes the
# differences are tenfold.
# Usage: bench/memory.sh [VITSCOPE] [IMAGE] [SIZES] [MAX_WHOLE]
#   (defaults: build/apps/vitscope, assets/images/shapes_1.png, "224 512 1024 2048 4096", 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
vitscope=${1:-build/apps/vitscope}
image=${2:-assets/images/shapes_1.png}
sizes=${3:-224 512 1024 2048 4096}
max_whole=${4:-1024}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[[ -x /usr/bin/time ]] || { echo "memory.sh: needs GNU time (apt-get install time)" >&2; exit 1; }

# Prints "peak MiB | seconds" of one run, or "fails: <its error>".
measure() {
  local out=$work/out
  rm -rf "$out"
  if /usr/bin/time -o "$work/time" -f "%M %e" "$vitscope" run "$image" --out "$out" "$@" \
      >/dev/null 2>"$work/stderr"; then
    read -r kb seconds <"$work/time"
    echo "$((kb / 1024)) MiB | $seconds s"
  else
    echo "fails: $(grep -o '"error": "[^"]*"' "$out/summary.json" 2>/dev/null | head -1) |"
  fi
}

echo "| --size | tokens | every view: peak | time | whole maps: peak | time | no attention: peak | time |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for size in $sizes; do
  tokens=$(((size / 16) * (size / 16)))
  default=$(measure --size "$size")
  whole="not run | "
  ((size <= max_whole)) && whole=$(measure --size "$size" --save-attention --max-memory-mb 1000000)
  none=$(measure --size "$size" --attention-views none --attention-layers none)
  echo "| $size | $tokens | $default | $whole | $none |"
done
echo
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
