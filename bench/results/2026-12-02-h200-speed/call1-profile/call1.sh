#!/bin/bash
# issue 14, call 1: profile + LM-head change before/after (same binary, flags), compiled HF W1 train in the same call
cd "$(dirname "$0")/../.."
O=${OUT:-/tmp/out}; mkdir -p $O
R="bash .gpu/common/run.sh .gpu/speed/app Microsoft.ML.Qwen3Moe.Benchmarks.dll"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $O/gpu.txt 2>&1
python3 -c 'import torch,transformers;print(torch.__version__, transformers.__version__)' >> $O/gpu.txt 2>&1
which nsys ncu >> $O/gpu.txt 2>&1
run() { local n=$1 t=$2; shift 2; echo "== $n: $*" | tee -a $O/log.txt; local s=$(date +%s); timeout $t "$@" > $O/$n.txt 2>&1; echo "rc=$? wall=$(( $(date +%s)-s ))s" >> $O/$n.txt; tail -${TL:-16} $O/$n.txt | tee -a $O/log.txt; }
TL=30 run verify 120 $R verify
run lmhead 90 $R lm-head
TL=20 run w1_before 120 $R w1 --mode train --profile --head-recompute --unfused-loss-grad
TL=24 run w1_after 120 $R w1 --profile --json $O/w1_after.json
grep -q "^RESULT" $O/w1_after.txt || TL=24 run w1_after_aten 120 $R w1 --profile --unfused-loss-grad
run hf4_train 240 python3 .gpu/speed/hf_strong.py 4 train fused compile
if command -v nsys >/dev/null; then
  run nsys 120 nsys profile -t cuda,nvtx -o /tmp/w1prof --force-overwrite true $R w1 --mode train --warmup 1 --iters 3
  nsys stats -r cuda_gpu_kern_sum -f csv -o /tmp/kern /tmp/w1prof.nsys-rep > /dev/null 2>&1; cp /tmp/kern*.csv $O/ 2>/dev/null; head -45 $O/kern*.csv | cut -c1-220 | tee -a $O/log.txt
fi
