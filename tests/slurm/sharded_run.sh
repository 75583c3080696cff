#!/usr/bin/env bash
# A sharded run on a real Slurm cluster. scripts/slurm_cluster.sh starts a one-node cluster; then
#   1. `sbatch --array=0-3 --wait` of deploy/slurm/vitscope_array.sbatch (vitscope run --shard
#      auto), and `vitscope merge` run here;
#   2. deploy/slurm/submit.sh: the same array with its merge as a dependent job;
# and each merged folder must be the single run's: the same files, each byte for byte (the .npy
# files and PNGs among them), summary.json equal apart from its timings.
# Exit 77 (ctest: skipped), with the reason, when Slurm is missing or the cluster cannot start.
# Usage: tests/slurm/sharded_run.sh VITSCOPE SOURCE_DIR
set -euo pipefail
(($# == 2)) || { echo "usage: $0 VITSCOPE SOURCE_DIR" >&2; exit 2; }
vitscope=$(realpath "$1")
source_dir=$(realpath "$2")
skip() { echo "SKIPPED: $*"; exit 77; }
fail() { echo "FAILED: $*"; exit 1; }

for tool in munged slurmctld slurmd sbatch squeue scontrol python3; do
  command -v "$tool" >/dev/null ||
    skip "$tool is not installed (bash scripts/setup.sh --tests installs Slurm and munge)"
done
[[ $(id -u) -eq 0 ]] || skip "the one-node cluster's slurmd must run as root"

work=$(mktemp -d "${TMPDIR:-/tmp}/vitscope_slurm_XXXXXX")
cleanup() {
  bash "$source_dir/scripts/slurm_cluster.sh" stop "$work/cluster" || true
  rm -rf "$work"
}
trap cleanup EXIT
# Seconds since $1, a `date +%s%N`, to a tenth.
seconds_since() { local ds=$((($(date +%s%N) - $1) / 100000000)); echo "$((ds / 10)).$((ds % 10))"; }
started=$(date +%s%N)
if ! reason=$(bash "$source_dir/scripts/slurm_cluster.sh" start "$work/cluster" 2>&1 >/dev/null); then
  skip "the one-node Slurm cluster did not start: ${reason//$'\n'/ }"
fi
echo "the cluster took $(seconds_since "$started") s to start"
export SLURM_CONF=$work/cluster/slurm.conf
export VITSCOPE=$vitscope  # for the batch scripts; sbatch passes the environment on
cd "$work"

# Ten images and a file that is not one; --save-attention adds the attention .npy files.
inputs=$source_dir/assets/images
options=(--threads 1 --save-attention)
"$vitscope" run "$inputs" --out single "${options[@]}" 2>single.log ||
  fail "the single run: $(tail -n 1 single.log)"

# The job's tasks, one "STATE EXIT_CODE" line each (jobs stay known to slurmctld for 5 minutes).
job_states() {
  scontrol -o show job "$1" | grep -o 'JobState=[A-Z_]* .* ExitCode=[0-9:]*' |
    sed 's/JobState=\([A-Z_]*\) .* ExitCode=/\1 /'
}
require_completed() {
  local states
  states=$(job_states "$1")
  if grep -qv '^COMPLETED 0:0$' <<<"$states"; then
    tail -n 3 ./*.out
    fail "job $1 did not complete: $(tr '\n' ' ' <<<"$states")"
  fi
}

# The merged folder is the single run's: the same files, every one byte for byte but
# summary.json, which must be equal apart from its timings.
compare() {
  local merged=$1 file compared=0
  for i in 0 1 2 3; do
    [[ -f $merged/summary.shard-$i-of-4.json ]] || fail "$merged: no summary of shard $i"
  done
  diff <(cd single && find . -type f | sort) \
       <(cd "$merged" && find . -type f ! -name 'summary.shard-*' | sort) ||
    fail "$merged: its files are not the single run's"
  while IFS= read -r file; do
    [[ $file == ./summary.json ]] && continue
    cmp "single/$file" "$merged/$file" || fail "$merged: $file differs"
    compared=$((compared + 1))
  done < <(cd single && find . -type f)
  python3 - single/summary.json "$merged/summary.json" <<'PY' || fail "$merged: summary.json is not the single run's"
import json, sys
single, merged = (json.load(open(path)) for path in sys.argv[1:])
assert set(single["timings"]) == set(merged["timings"]), "the timings' keys differ"
del single["timings"], merged["timings"]
assert single == merged, "summary.json differs apart from its timings"
PY
  echo "$merged: $compared files identical ($(cd single && find . -name '*.npy' | wc -l) .npy," \
       "$(cd single && find . -name '*.png' | wc -l) PNG), summary.json equal apart from timings"
}

# 1. The array with sbatch --wait, then the merge here.
started=$(date +%s%N)
sbatch --quiet --array=0-3 --wait "$source_dir/deploy/slurm/vitscope_array.sbatch" \
  "$inputs" --out sharded "${options[@]}" || { tail -n 3 ./*.out; fail "sbatch --array=0-3 --wait"; }
echo "the array of 4 shards took $(seconds_since "$started") s (sbatch --wait polls slowly)"
"$vitscope" merge sharded 2>merge.log || fail "vitscope merge: $(tail -n 1 merge.log)"
compare sharded

# 2. submit.sh: the array and the merge as a job that waits for it. An empty job depending on
# the merge is waited for, then both jobs must have completed.
read -r array merge < <(bash "$source_dir/deploy/slurm/submit.sh" 4 "$inputs" --out submitted \
                          "${options[@]}")
sbatch --quiet --wait --dependency="afterany:$merge" --output=/dev/null --wrap true
require_completed "$array"
require_completed "$merge"
compare submitted
