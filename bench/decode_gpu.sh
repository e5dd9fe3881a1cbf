#!/bin/bash
# Decode speed of the scripted decode step (KernelOptions.ScriptedDecode) against the module path and Hugging Face's
# generate (dynamic cache), all in one device call, W2 shapes (48 layers; LAYERS overrides), prompt 512, 256 new tokens.
# On the GPU machine, from the repository root, with the bench app staged under $APP and the shared .NET runtime under
# .gpu/common:  bash bench/decode_gpu.sh .gpu/decode/app .gpu/decode/generate_hf.py     Results go to $OUT.
APP=${1:?app folder}; HF=${2:?generate_hf.py}; L=${LAYERS:-48}; O=${OUT:-/tmp/out}; mkdir -p $O
RUN="bash .gpu/common/run.sh $APP Microsoft.ML.Qwen3Moe.Benchmarks.dll generate --layers $L"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $O/gpu.txt 2>&1
python3 -c 'import torch,transformers;print(torch.__version__, transformers.__version__)' >> $O/gpu.txt 2>&1
part() { local name=$1 t=$2; shift 2; echo "== $name"; timeout $t "$@" > $O/$name.txt 2>&1; echo "rc=$?" >> $O/$name.txt; grep -E "^\||RESULT|rc=|Exception|rror" $O/$name.txt | head -20; }
part scripted 70 $RUN --batches 1,32 --json $O/scripted.json
part hf 130 python3 $HF $L dynamic
part modules 100 $RUN --scripted-decode false --batches 1,32 --json $O/modules.json
part scripted-sorted 30 $RUN --gather-pairs 0 --batches 1 --json $O/scripted-sorted.json
