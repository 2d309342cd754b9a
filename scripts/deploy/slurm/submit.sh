#!/usr/bin/env bash
# Embeds a library on a Slurm cluster: an array job of N shards, then a merge job that runs once they all
# succeeded (afterok). Paths must be on storage every node sees. Prints the two job ids.
#   SOUNDALIKE_BIN=/shared/bin/soundalike bash scripts/deploy/slurm/submit.sh LIBRARY OUT N [MODEL] [-- sbatch flags...]
# The shards go to OUT.shards/. A failed or pre-empted task: `sbatch --array=K scripts/deploy/slurm/embed.sbatch
# LIBRARY OUT.shards N MODEL` (it resumes), then `sbatch scripts/deploy/slurm/merge.sbatch OUT.shards N OUT`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
lib="$(realpath "$1")"; out="$(realpath -m "$2")"; n="$3"; model="$(realpath "${4:-models/default}")"
shift $(( $# < 4 ? $# : 4 )); [ "${1:-}" = "--" ] && shift
shards="$out.shards"
array=$(sbatch --parsable "$@" --array=0-$((n - 1)) "$here/embed.sbatch" "$lib" "$shards" "$n" "$model")
array="${array%%;*}"
merge=$(sbatch --parsable "$@" --dependency=afterok:"$array" "$here/merge.sbatch" "$shards" "$n" "$out")
echo "embed array job $array ($n tasks), merge job ${merge%%;*} -> $out"
