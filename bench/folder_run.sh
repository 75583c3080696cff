#!/usr/bin/env bash
# Folder-run throughput: `vitscope run` over COPIES copies of assets/images, at 1 and 2 threads,
# features only and with every view, with the pictures in each of FORMATS; each run REPEAT times,
# interleaved, and the medians printed: images/s, the ratio of every-view to features-only, and
# where the time went (from each run's summary.json). With 2 threads images are decoded on a
# thread of their own while the model runs, so decode time is hidden in the wall time; draw and
# encode are summed over the threads.
# Usage: bench/folder_run.sh [VITSCOPE] [COPIES] [FORMATS] [MODEL] [REPEAT]
#   (defaults: build/apps/vitscope, 10, "png jpg", the shipped demo model, 3). The views cost the
#   same whatever the model, so the share depends on the model's forward: bench/README.md also
#   runs it with a ViT-S/16 made by torchvision's own class (bench/make_vit_small.sh).
#   The images and outputs go to a folder made by mktemp, so TMPDIR picks the disk written to
#   (TMPDIR=/dev/shm: memory, which leaves the filesystem out of the figures).
set -euo pipefail
cd "$(dirname "$0")/.."
vitscope=${1:-build/apps/vitscope}
copies=${2:-10}
formats=${3:-png jpg}
model=${4:-assets/models/demo.safetensors}
repeat=${5:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for i in $(seq 1 "$copies"); do
  mkdir -p "$work/images/$i"
  cp assets/images/*.png assets/images/*.jpg "$work/images/$i/"
done
for r in $(seq 1 "$repeat"); do
  for format in $formats; do
    for threads in 1 2; do
      for outputs in features all; do
        views=()
        [[ $outputs == features ]] && views=(--attention-views none --attention-layers none)
        out="$work/out/$format/$threads/$outputs/$r"
        # The process's CPU seconds (user + system) beside its wall time: on a shared machine the
        # wall time also holds what other machines' load took from it.
        cpu=$( { TIMEFORMAT='%U %S'; time "$vitscope" run "$work/images" --out "$out" \
                 --model "$model" --batch 8 --threads "$threads" --view-format "$format" \
                 "${views[@]}" 2>/dev/null; } 2>&1 )
        echo "$cpu" | awk '{print $1 + $2}' > "$out/cpu_s"
        rm -rf "$out/images"  # keep the summaries only
      done
    done
  done
done

/usr/bin/python3 - "$work/out" "$(find "$work/images" -type f | wc -l)" $formats <<'PY'
import glob, json, statistics, sys
root, count, formats = sys.argv[1], sys.argv[2], sys.argv[3:]
def medians(format, threads, outputs):
    runs = []
    for folder in glob.glob(f"{root}/{format}/{threads}/{outputs}/*"):
        run = json.load(open(f"{folder}/summary.json"))["timings"]
        run["images_per_cpu_s"] = int(count) / float(open(f"{folder}/cpu_s").read())
        runs.append(run)
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}
print("| format | outputs | threads | images | wall s | images/s | of features-only | "
      "images/CPU-s | of features-only | decode s | forward s | draw s | encode s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for format in formats:
    for threads in (1, 2):
        features = medians(format, threads, "features")
        for outputs in ("features", "all"):
            t = medians(format, threads, outputs)
            share = t["images_per_s"] / features["images_per_s"]
            cpu_share = t["images_per_cpu_s"] / features["images_per_cpu_s"]
            print(f"| {format} | {outputs} | {threads} | {count} | {t['total_s']:.2f} | "
                  f"{t['images_per_s']:.1f} | {100 * share:.0f}% | {t['images_per_cpu_s']:.1f} | "
                  f"{100 * cpu_share:.0f}% | {t['load_s']:.2f} | "
                  f"{t['forward_s']:.2f} | {t['draw_s']:.2f} | {t['encode_s']:.2f} |")
PY
