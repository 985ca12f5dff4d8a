#!/usr/bin/env bash
# One prepared call on the lent GPU machine (docs/training.md, "Fifteen GPU minutes"): fine-tune from the
# shipped weights for BUDGET seconds, ship the weights, export the ONNX bundle and run benchmarks/rd.py
# against the shipped bundle; results under $OUT.
#
#   here, once:  scripts/pack-crops            (traindata/crops.npz, sized to fit the 64 MiB that travel)
#   device tool: run  command "bash scripts/gpu_train.sh"  carry ["traindata"]  timeout_s 600
#
# Only the repository travels (no ../shared, no venv): the crops come packed in traindata/, Kodak is
# represented by the repository's kodim23 alone, and the machine has onnxruntime but neither openvino
# nor tensorflow, so the export here is the onnx target. The decision to ship is taken on the CPU
# afterwards: unpack weights.tar, `edgecodec export --target all`, rd.py on all of Kodak (see the docs).
# Run again on a warm machine, it resumes runs/gpu/ckpt with its optimizer state.
set -u -o pipefail
BUDGET=${BUDGET:-390}      # seconds of training (the schedule's length); the rest of the 600 s: start ~15, export <=100, rd <=80
EXPORT_S=${EXPORT_S:-100} RD_S=${RD_S:-80}  # limits of the two steps after training
POST=${POST:-1}            # 0: no export and rd here (then BUDGET=540 fits the 600 s; the CPU runs both afterwards)
BATCH=${BATCH:-56}         # 56 x 192^2: the pixels per step of the first run's 32 x 256^2
CROP=${CROP:-192}
LR=${LR:-1e-4}
COMPILE=${COMPILE:-auto}   # auto: the first steps time eager against torch.compile and keep the faster
QAT_TAIL=${QAT_TAIL:-0.1}  # the budget's last tenth: QAT of the synthesis through the export's int8 grids (models/qat.py)
VAL=${VAL:-8}               # packed crops held out: their loss (rounded latents, every level) at the start, every 30 s, at the end
PY=${PY:-python3}
THREADS=${THREADS:-16}     # rd.py's encoders and decoders
QUALITIES=${QUALITIES:+--qualities $QUALITIES}  # rd.py: a subset of levels (default: all)
RUN=${RUN:-runs/gpu}
OUT=${OUT:-$RUN/out}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$RUN" "$OUT/rd"
t0=$(date +%s)
stamp() { echo "== $(($(date +%s) - t0)) s: $*"; }

{
  stamp "train"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
  timeout -s TERM $((BUDGET + 150)) $PY -m edgecodec.models.train --data traindata/crops.npz --init edgecodec/data/weights \
    --out $RUN --resume --time-budget "$BUDGET" --batch "$BATCH" --crop "$CROP" --schedule cosine --lr "$LR" --lr-final 1e-6 \
    --compile "$COMPILE" --qat-tail "$QAT_TAIL" --recalibrate 1000 --val-crops "$VAL" --val-every 30 --ckpt-every 60 --log-every 2000 --ship $RUN/weights
  echo "train rc=$?"
} 2>&1 | tee "$OUT/train.out"
cp $RUN/log.jsonl "$OUT/" 2>/dev/null
tar -cf "$OUT/weights.tar" -C $RUN weights 2>/dev/null

[ "$POST" = 1 ] || { ls -la "$OUT"; exit 0; }
{
  stamp "export (onnx target)"
  rm -rf $RUN/bundle
  # no validation here (~2 min of the budget): the export that ships runs on the CPU, validated
  timeout "$EXPORT_S" $PY -m edgecodec.cli export --target onnx --no-validate --checkpoint $RUN/weights --out $RUN/bundle
  echo "export rc=$?"
  stamp "rd.py on kodim23 (int8 ONNX Runtime) against the shipped bundle and JPEG"
  mkdir -p $RUN/kodak && cp edgecodec/data/kodim23.png $RUN/kodak/
  timeout "$RD_S" $PY benchmarks/rd.py --kodak $RUN/kodak --bundle $RUN/bundle --checkpoint $RUN/weights \
    --previous-bundle edgecodec/data/bundle --codecs jpeg --no-fast --threads "$THREADS" $QUALITIES --out "$OUT/rd" --plot ''
  echo "rd rc=$?"
  $PY - "$OUT/rd/rd_summary.json" "$OUT/log.jsonl" <<'EOF'
import json, sys
val = [r for r in map(json.loads, open(sys.argv[2])) if "val" in r] if len(sys.argv) > 2 else []
if val:
    print(f"held-out crops, loss at every level: {val[0]['val']['loss']} at step {val[0]['step']} -> {val[-1]['val']['loss']} at step {val[-1]['step']}")
try:
    bd = {(e["test"], e["anchor"]): e["psnr"] for e in json.load(open(sys.argv[1]))["bd_rate"]}
except (OSError, ValueError, KeyError) as e:
    sys.exit(f"no rd summary ({e})")
pct = lambda v: "n/a" if v is None else f"{v:+.2f}%"
v = bd.get(("edgecodec-int8", "edgecodec-int8-previous"))
print(f"BD-rate int8 new vs shipped (kodim23 only): {pct(v)}; "
      f"vs JPEG: new {pct(bd.get(('edgecodec-int8', 'jpeg')))}, shipped {pct(bd.get(('edgecodec-int8-previous', 'jpeg')))}")
print("candidate: confirm on all of Kodak on the CPU" if v is not None and v <= -1.0 else "not a candidate on this image")
EOF
  stamp "done"
} 2>&1 | tee "$OUT/post.out"
ls -la "$OUT" "$OUT/rd"
