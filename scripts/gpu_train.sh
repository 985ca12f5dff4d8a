#!/usr/bin/env bash
# Drive training on a lent GPU machine (see docs/training.md).
#   start|wait SECONDS : (re)start the trainer as a daemon if it is not running, sleep, copy checkpoint to $OUT
#   finish             : wait for the trainer to reach its time budget (or stop it), copy checkpoint to $OUT
# The trainer outlives each call (setsid) so a warm machine trains without gaps.
set -u
MODE=${1:-wait}; SLEEP=${2:-540}; BUDGET=${BUDGET:-1380}
RUN=runs/gpu; mkdir -p $RUN/ckpt
export PYTHONUNBUFFERED=1
running() { pgrep -f "edgecodec.models.train" >/dev/null; }
if [ "$MODE" != finish ] && ! running; then
  nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
  setsid nohup python3 -m edgecodec.models.train --data traindata --out $RUN --resume \
    --time-budget "$BUDGET" --batch 32 --crop 256 --lr 2e-4 --ckpt-every 60 --log-every 500 \
    >> $RUN/train.out 2>&1 < /dev/null &
  sleep 5
fi
if [ "$MODE" = finish ]; then
  for _ in $(seq 1 "$SLEEP"); do running || break; sleep 1; done
  pkill -TERM -f "edgecodec.models.train"; for _ in $(seq 1 60); do running || break; sleep 1; done
else
  for _ in $(seq 1 "$SLEEP"); do running || { echo "TRAINER NOT RUNNING"; break; }; sleep 1; done
fi
tail -n 4 $RUN/train.out
cp $RUN/ckpt/*.pt $RUN/ckpt/state.json "$OUT"/ 2>/dev/null
cp $RUN/log.jsonl "$OUT"/ 2>/dev/null
ls -la "$OUT"
