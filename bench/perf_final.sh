#!/bin/bash
# Final single-GPU measurements on the merged main: ours (W1, W2) and HF (bench_hf.py via bench_hf_mem.py) in one call.
cd "$(dirname "$0")/.."
O=${OUT:-/tmp/out}; mkdir -p $O
R="bash .gpu/run.sh Microsoft.ML.Qwen3Moe.Benchmarks.dll"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $O/gpu.txt 2>&1
python3 -c 'import torch,transformers;print(torch.__version__, transformers.__version__)' >> $O/gpu.txt 2>&1
run() { local n=$1; shift; echo "== $n: $*" | tee -a $O/log.txt; timeout ${T:-200} "$@" > $O/$n.txt 2>&1; echo "rc=$?" >> $O/$n.txt; tail -25 $O/$n.txt | tee -a $O/log.txt; }
T=200 run pipeline $R pipeline --micro 4
run w1 $R w1 --warmup 3 --json $O/w1.json
T=120 run w1_expand_kv $R w1 --warmup 3 --expand-kv
T=240 run hf python3 .gpu/bench_hf_mem.py 4
T=120 run w2 $R w2 --json $O/w2.json
