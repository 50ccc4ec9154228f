#!/usr/bin/env bash
# Multi-node training under SLURM: one task per GPU, started by srun; Lightning reads the ranks from SLURM.
#
#   sbatch scripts/launch_slurm.sh experiment=<name> data.root=/data/imagenet
#   sbatch --nodes=4 scripts/launch_slurm.sh experiment=<name> data.root=/data/imagenet trainer=fsdp
#
# Pre-emption: SLURM sends SIGUSR1 90 s before the time limit; Lightning then writes hpc_ckpt_*.ckpt into the run
# directory and requeues the job, and the requeued job (same SLURM_JOB_ID, so the same RUN_DIR) resumes from it.
# A resubmitted job with RUN_DIR set to an earlier run resumes from its checkpoints/last.ckpt.
# Run `mkdir -p logs/slurm` before the first sbatch: SLURM does not create the --output directory.
#SBATCH --job-name=kanvision
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --mem=0
#SBATCH --time=48:00:00
#SBATCH --signal=SIGUSR1@90
#SBATCH --requeue
#SBATCH --output=logs/slurm/%x-%j.out
set -euo pipefail

RUN_DIR=${RUN_DIR:-logs/train/runs/slurm_${SLURM_JOB_ID}}
PYTHON=${PYTHON:-python}

RESUME=()
if compgen -G "$RUN_DIR/hpc_ckpt_*.ckpt" > /dev/null; then
  RESUME=()  # Lightning picks up its own requeue checkpoint
elif [[ -f "$RUN_DIR/checkpoints/last.ckpt" ]]; then
  RESUME=(ckpt_path=last)
fi

srun "$PYTHON" -m kanvision.train \
  trainer=multi_node trainer.num_nodes="$SLURM_JOB_NUM_NODES" trainer.devices="$SLURM_NTASKS_PER_NODE" \
  hydra.run.dir="$RUN_DIR" "${RESUME[@]}" "$@"
