#!/usr/bin/env bash
# Folder-run throughput: `vitscope run` over COPIES copies of assets/images (the shipped model),
# at 1 and 2 threads, features only and with every view; prints images/s and where the time went
# (from each run's summary.json). With 2 threads images are decoded on a thread of their own while
# the model runs, so decode time is hidden in the wall time.
# Usage: bench/folder_run.sh [VITSCOPE] [COPIES]   (defaults: build/apps/vitscope, 10)
set -euo pipefail
cd "$(dirname "$0")/.."
vitscope=${1:-build/apps/vitscope}
copies=${2:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for i in $(seq 1 "$copies"); do
  mkdir -p "$work/images/$i"
  cp assets/images/*.png assets/images/*.jpg "$work/images/$i/"
done
count=$(find "$work/images" -type f | wc -l)
echo "| outputs | threads | batch | images | wall s | images/s | decode s | forward s |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for outputs in features all; do
  views=()
  [[ $outputs == features ]] && views=(--attention-views none --attention-layers none)
  for threads in 1 2; do
    out="$work/out-$outputs-$threads"
    "$vitscope" run "$work/images" --out "$out" --batch 8 --threads "$threads" "${views[@]}" \
        2>/dev/null
    /usr/bin/python3 - "$out/summary.json" "$outputs" "$threads" "$count" <<'EOF'
import json, sys
summary = json.load(open(sys.argv[1]))
t = summary["timings"] if "timings" in summary else summary
print(f"| {sys.argv[2]} | {sys.argv[3]} | 8 | {sys.argv[4]} | {t['total_s']:.2f} | "
      f"{t['images_per_s']:.1f} | {t['load_s']:.2f} | {t['forward_s']:.2f} |")
EOF
  done
done
