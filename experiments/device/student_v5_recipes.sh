#!/bin/bash
# GPU run (device tool, carry pack/a/seqs pack/b/seqs pack/p and this file; OUT: where files come back):
# student v4 (stride-4 stem, 32-d) distilled at 223-pixel search crops on the packed data
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
PK="data.got10k_roots=[pack/a/seqs,pack/b/seqs] data.photos=[pack/p/photos/boxes.json] data.max_frame_gap=30 eval_root= train.num_workers=3 tracker.instance_sz=223 train.batch_size=32 train.lr=5e-3 train.final_lr=5e-5 ${EXTRA:-}"
T=${T:-400}
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
run() { n=$1; shift; timeout $T python3 experiments/train.py --config experiments/student_v4.yaml --no-progress --speed-frames 0 $PK name=$n "$@" > $OUT/$n.log 2>&1; }
run v4g_a &
run v4g_b train.seed=1 data.seed=1 &
run v4g_c train.epochs=20 &
run v4g_d compress.student_init=weights/siamfc_student_v4.pth train.lr=1e-3 train.final_lr=1e-5 &
wait
for n in v4g_a v4g_b v4g_c v4g_d; do
  d=runs/$n/distill
  if [ -f $d/final.pth ]; then cp $d/final.pth $OUT/$n.pth; else cp $d/last.pth $OUT/$n.last.pth 2>/dev/null; fi
  grep -h "epoch_end" $d/log.jsonl | tail -1
  grep -h "done in" $OUT/$n.log
done
ls -la $OUT
