#!/bin/bash
# The `generate` benchmark and its Hugging Face reference in one device call (run from the repository root on the GPU
# machine, with the staged app under $G: bash bench/generate_gpu.sh .gpu). Results go to $OUT.
G=${1:-.gpu}; O=${OUT:-/tmp/out}; mkdir -p $O
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $O/gpu.txt 2>&1
python3 -c 'import torch,transformers;print(torch.__version__, transformers.__version__)' >> $O/gpu.txt 2>&1
echo "== ours"; timeout ${T_OURS:-240} bash $G/run.sh Microsoft.ML.Qwen3Moe.Benchmarks.dll generate --json $O/generate.json > $O/generate.txt 2>&1; echo "rc=$?" >> $O/generate.txt; tail -8 $O/generate.txt
echo "== hf"; timeout ${T_HF:-300} python3 $G/generate_hf.py > $O/generate_hf.txt 2>&1; echo "rc=$?" >> $O/generate_hf.txt; grep -E "RESULT|FAIL|rc=" $O/generate_hf.txt
