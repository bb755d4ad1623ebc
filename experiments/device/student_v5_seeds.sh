#!/bin/bash
# GPU run (device tool, carry pack/a/seqs pack/b/seqs pack/p and this file; OUT: where files come back):
# more seeds of student_v5_recipes.sh's two best recipes (a: from student v3 at lr 5e-3; d: from student v4 at lr 1e-3)
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
PK="data.got10k_roots=[pack/a/seqs,pack/b/seqs] data.photos=[pack/p/photos/boxes.json] data.max_frame_gap=30 eval_root= confidence_frames=0 train.num_workers=2 tracker.instance_sz=223 train.batch_size=32 train.lr=5e-3 train.final_lr=5e-5 ${EXTRA:-}"
T=${T:-330}
D="compress.student_init=weights/siamfc_student_v4.pth train.lr=1e-3 train.final_lr=1e-5"
run() { n=$1; s=$2; shift 2; timeout $T python3 experiments/train.py --config experiments/student_v4.yaml --no-progress --speed-frames 0 $PK name=$n train.seed=$s data.seed=$s "$@" > $OUT/$n.log 2>&1; }
run v4g_d1 1 $D &
run v4g_d2 2 $D &
run v4g_d3 3 $D &
run v4g_a2 2 &
run v4g_a3 3 &
run v4g_a4 4 &
wait
for n in v4g_d1 v4g_d2 v4g_d3 v4g_a2 v4g_a3 v4g_a4; do
  d=runs/$n/distill
  if [ -f $d/final.pth ]; then cp $d/final.pth $OUT/$n.pth; else cp $d/last.pth $OUT/$n.last.pth 2>/dev/null; fi
  echo "$n $(grep -h epoch_end $d/log.jsonl | tail -1)"; tail -3 $OUT/$n.log; rm $OUT/$n.log
done
ls -la $OUT
