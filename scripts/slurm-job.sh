#!/usr/bin/env bash
# The batch script of a lab run on Slurm: the registry submits it with
#
#   sbatch [options] scripts/slurm-job.sh --python PYTHON --nproc-per-node K --run-dir RUN_DIR [--resume]
#
# and Slurm runs it on the first node of the job, in the project folder (sbatch --chdir).
#
#   one node, one process       PYTHON -m lib.train --run-dir RUN_DIR
#   one node, K processes       PYTHON -m torch.distributed.run --standalone --nproc_per_node=K -m lib.train ...
#   N nodes                     srun (one task per node) PYTHON -m torch.distributed.run --nnodes=N
#                               --nproc_per_node=K --rdzv_backend=c10d --rdzv_endpoint=FIRST_NODE:PORT
#                               --rdzv_id=JOB_ID -m lib.train ...
#
# The rendezvous host is the first node of Slurm's own node list and the port is derived from the job
# id, so nobody types an endpoint. Every value comes from the registry (never from a visitor's text)
# and is passed on as one argument each; nothing here is evaluated as shell code.
set -euo pipefail

python="" nproc=1 run_dir="" resume=()
while [ $# -gt 0 ]; do
    case "$1" in
        --python) python="${2:?--python needs a path}"; shift 2 ;;
        --nproc-per-node) nproc="${2:?--nproc-per-node needs a number}"; shift 2 ;;
        --run-dir) run_dir="${2:?--run-dir needs a path}"; shift 2 ;;
        --resume) resume=(--resume); shift ;;
        *) echo "slurm-job.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -n "$python" ] || { echo "slurm-job.sh: --python is required" >&2; exit 2; }
[ -n "$run_dir" ] || { echo "slurm-job.sh: --run-dir is required" >&2; exit 2; }
case "$nproc" in ''|*[!0-9]*|0) echo "slurm-job.sh: --nproc-per-node must be a positive number, got $nproc" >&2; exit 2 ;; esac

nodes="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}"
# Slurm has already given the job its CPUs/GPUs: the job skips the one-machine queue (lib.store.slots)
export LAB_SCHEDULER=slurm
export PYTHONUNBUFFERED=1
job=(-m lib.train --run-dir "$run_dir" "${resume[@]}")
echo "[lab] Slurm job ${SLURM_JOB_ID:-?} on ${SLURM_JOB_NODELIST:-$(hostname)}: $nodes node(s) x $nproc process(es)"

if [ "$nodes" -le 1 ] && [ "$nproc" -le 1 ]; then
    exec "$python" "${job[@]}"
elif [ "$nodes" -le 1 ]; then
    exec "$python" -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node="$nproc" "${job[@]}"
else
    head_node="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"
    port=$(( 20000 + ${SLURM_JOB_ID:-0} % 20000 ))
    echo "[lab] rendezvous at $head_node:$port"
    # srun forwards a cancel (SIGTERM, then SIGKILL) to every node; one failed node ends the others
    exec srun --nodes="$nodes" --ntasks-per-node=1 --kill-on-bad-exit=1 \
        "$python" -m torch.distributed.run --nnodes="$nodes" --nproc_per_node="$nproc" \
        --rdzv_backend=c10d --rdzv_endpoint="$head_node:$port" --rdzv_id="${SLURM_JOB_ID:-0}" "${job[@]}"
fi
