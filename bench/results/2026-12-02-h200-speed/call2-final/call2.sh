#!/bin/bash
# issue 14, call 2: ours before/after (same binary, flags) and compiled HF (W1 train, 8-layer train, W1 forward) in one call
cd "$(dirname "$0")/../.."
O=${OUT:-/tmp/out}; mkdir -p $O
R="bash .gpu/common/run.sh .gpu/speed/app Microsoft.ML.Qwen3Moe.Benchmarks.dll"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $O/gpu.txt 2>&1
python3 -c 'import torch,transformers;print(torch.__version__, transformers.__version__)' >> $O/gpu.txt 2>&1
run() { local n=$1 t=$2; shift 2; echo "== $n: $*" | tee -a $O/log.txt; local s=$(date +%s); timeout $t "$@" > $O/$n.txt 2>&1; echo "rc=$? wall=$(( $(date +%s)-s ))s" >> $O/$n.txt; tail -${TL:-6} $O/$n.txt | tee -a $O/log.txt; }
OLD="--head-recompute --unfused-loss-grad --moe indexadd"
TL=3 run verify 150 $R verify
grep -E "FAIL|experts|passed|failed" $O/verify.txt | cut -c1-200 | tee -a $O/log.txt
TL=22 run w1_before 100 $R w1 --profile $OLD
TL=4 run w1_head 90 $R w1 --mode train --moe indexadd
TL=24 run w1_after 100 $R w1 --profile --moe gather --json $O/w1_after.json
TL=4 run w8_before 120 $R w1 --layers 8 --mode train $OLD
TL=4 run w8_after 120 $R w1 --layers 8 --mode train --moe gather --json $O/w8_after.json
TL=3 run hf4_train 200 python3 .gpu/speed/hf_strong.py 4 train fused compile
TL=3 run hf8_train 240 python3 .gpu/speed/hf_strong.py 8 train fused compile
TL=3 run hf4_fwd 150 python3 .gpu/speed/hf_strong.py 4 fwd compile
