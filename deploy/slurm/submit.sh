#!/usr/bin/env bash
# Submits a sharded vitscope run to Slurm: an array of N shards (vitscope_array.sbatch) and the
# merge (vitscope_merge.sbatch), which starts when every shard has ended. Prints the two job ids.
# Usage: deploy/slurm/submit.sh N INPUT... --out OUT [vitscope run options]
#   e.g. deploy/slurm/submit.sh 100 /data/imagenet/train --out /scratch/imagenet --threads 2
# SBATCH_* variables (SBATCH_PARTITION, SBATCH_TIMELIMIT...) set sbatch's options for both jobs.
set -euo pipefail
here=$(dirname "$0")
usage() { echo "usage: $0 N INPUT... --out OUT [vitscope run options]" >&2; exit 2; }
(($# >= 3)) && [[ $1 =~ ^[1-9][0-9]*$ ]] || usage
count=$1
shift

# OUT, which the merge needs too.
out=""
args=("$@")
for ((i = 0; i < ${#args[@]}; ++i)); do
  case "${args[i]}" in
    --out) out=${args[i + 1]:-} ;;
    --out=*) out=${args[i]#--out=} ;;
    --shard | --shard=*) echo "submit.sh: --shard is set by the array; leave it out" >&2; exit 2 ;;
  esac
done
[[ -n $out ]] || usage

array=$(sbatch --parsable --array="0-$((count - 1))" "$here/vitscope_array.sbatch" "$@")
array=${array%%;*}  # --parsable prints "id;cluster" on federated clusters
# afterany, not afterok: a shard with a few unreadable images exits 1 but its summary is
# complete, and merge itself refuses shards that are missing or were interrupted.
merge=$(sbatch --parsable --dependency="afterany:$array" "$here/vitscope_merge.sbatch" "$out")
echo "$array ${merge%%;*}"
