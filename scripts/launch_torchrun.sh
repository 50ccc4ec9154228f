#!/usr/bin/env bash
# Multi-GPU / multi-node training with torchrun. Run it on EVERY node with the same RUN_DIR (a shared filesystem):
# torchrun starts one process per GPU, and Lightning reads the rank layout from torchrun's environment.
#
#   # one node, all its GPUs
#   scripts/launch_torchrun.sh experiment=<name> data.root=/data/imagenet
#   # two nodes with 8 GPUs each (node 0 shown; node 1 uses NODE_RANK=1)
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0.cluster RUN_DIR=/shared/runs/kat_t \
#     scripts/launch_torchrun.sh experiment=<name> data.root=/data/imagenet
#
# Re-running with the same RUN_DIR resumes from RUN_DIR/checkpoints/last.ckpt (epoch, step, optimizer, scheduler,
# EMA and the wandb run). data.batch_size is the global batch: each process loads batch_size / world_size.
set -euo pipefail

NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi --list-gpus | wc -l)}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
RUN_DIR=${RUN_DIR:-logs/train/runs/torchrun_$(date +%Y-%m-%d)}
PYTHON=${PYTHON:-python}

RESUME=()
if [[ -f "$RUN_DIR/checkpoints/last.ckpt" ]]; then
  RESUME=(ckpt_path=last)
fi

exec "$PYTHON" -m torch.distributed.run \
  --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$GPUS_PER_NODE" \
  --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
  -m kanvision.train \
  trainer=ddp trainer.num_nodes="$NNODES" trainer.devices="$GPUS_PER_NODE" \
  hydra.run.dir="$RUN_DIR" "${RESUME[@]}" "$@"
