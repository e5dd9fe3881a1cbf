#!/bin/bash
# Issue 12 on the GPU machine, one call, from the project root with the staged folder G (default .gpu/lora: app/, run.sh,
# the .NET runtime, hf_lora.py, peft_check.py, golden/mixed, ours/ written by PeftExportTests with QWEN3MOE_PEFT_CHECK_OUT):
# proof (b) (PEFT loads our adapter; CPU, float32), then our `lora` workload and hf_lora.py on the same shapes.
G=${G:-.gpu/lora}; O=${OUT:-/tmp/out}; mkdir -p $O
log() { tee -a $O/lora_log.txt; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | log
CUDA_VISIBLE_DEVICES= timeout 100 python3 $G/peft_check.py $G/golden/mixed/model $G/ours 2>&1 | grep -E "PEFT_CHECK|Error" | log
run() { local n=$1 t=$2; shift 2; echo "== $n" | log; timeout $t "$@" > $O/$n.txt 2>&1; echo "rc=$?" | log; grep -E "^\| LoRA|RESULT|PEFT_FAIL|Exception|error" $O/$n.txt | cut -c1-900 | log; }
if [ "${1:-}" = memory ]; then
  # the open points of issue 12 (not run yet): peak memory with bf16 adapter state and with expandable segments, and the
  # reference at its strongest (torch.compile), all in one call
  run ours_experts_bf16_state 150 bash $G/run.sh Microsoft.ML.Qwen3Moe.Benchmarks.dll lora --bf16-state --warmup 1 --iters 3
  run ours_experts_expandable 150 env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True \
    bash $G/run.sh Microsoft.ML.Qwen3Moe.Benchmarks.dll lora --warmup 1 --iters 3
  run hf_experts_compile 200 python3 $G/hf_lora.py 48 attn+experts ckpt compile
  exit 0
fi
run ours_experts 150 bash $G/run.sh Microsoft.ML.Qwen3Moe.Benchmarks.dll lora --warmup 1 --iters 3
run hf_experts 150 python3 $G/hf_lora.py 48 attn+experts ckpt
run ours_attn 80 bash $G/run.sh Microsoft.ML.Qwen3Moe.Benchmarks.dll lora --targets attn --warmup 1 --iters 3
run hf_attn 90 python3 $G/hf_lora.py 48 attn ckpt
