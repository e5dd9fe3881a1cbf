#!/bin/bash
# Issue 17 on the GPU machine, one call, from the project root, with the benchmarks app staged in G (default .gpu/buckets:
# app.tar.xz from `dotnet publish bench -r linux-x64 --self-contained false`, the .NET runtime tarball, varlen_run.sh).
#   bash $G/varlen_device.sh profile   where a new sequence length costs time (kernels first call vs repeat; estimator
#                                      runs with cuDNN attention deprioritized, expandable segments, length buckets)
#   bash $G/varlen_device.sh measure   attention numerics (flash vs SDPA's cuDNN vs float32), then fixed-length (20k-character)
#                                      and varying-length (9k) rows through the estimator, flash attention on and off
#   bash $G/varlen_device.sh final     attention numerics again, buckets of 64, PackSequences (its masked attention) on the 9k rows
G=${G:-.gpu/buckets}; O=${OUT:-/tmp/out}; mkdir -p $O
R="bash $G/varlen_run.sh"
C="--corpus bench/data/bench-corpus.txt --tokenizer tests/Fixtures/tokenizer"
log() { tee -a $O/log.txt; }
run() { local n=$1 t=$2; shift 2; echo "== $n: $*" | log; timeout $t "$@" > $O/$n.txt 2>&1; echo "rc=$?" | log
  grep -E "^\||^FIT|^TRANSFORM|^SDPA|^varlen|: at 2048|parity|^  |failed|Exception" $O/$n.txt | cut -c1-700 | log; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | log
python3 -c 'import torch;print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1 | log
case ${1:-profile} in
profile)
  run shapes 110 $R shapes
  run fixed20k 75 $R varlen --chars 20000 --steps 30 --score-rows 64 $C
  run var9k 75 $R varlen --chars 9000 --steps 30 --score-rows 64 $C
  run var9k_cudnn_last 75 env TORCH_CUDNN_SDPA_DEPRIORITIZED=1 $R varlen --chars 9000 --steps 30 --score-rows 64 $C
  run var9k_expandable 75 env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True $R varlen --chars 9000 --steps 30 --score-rows 64 $C
  run var9k_pad128 75 $R varlen --chars 9000 --steps 30 --score-rows 64 --pad-multiple 128 $C
  ;;
measure)
  run parity 60 $R shapes --parity
  run var9k_sdpa 150 $R varlen --chars 9000 --steps 120 --attention sdpa $C
  run var9k_flash 100 $R varlen --chars 9000 --steps 120 $C
  run fixed20k_flash 90 $R varlen --chars 20000 --steps 120 $C
  run fixed20k_sdpa 90 $R varlen --chars 20000 --steps 120 --attention sdpa $C
  run var9k_flash_pad128 100 $R varlen --chars 9000 --steps 120 --pad-multiple 128 $C
  ;;
final)
  run parity 60 $R shapes --parity
  run var9k_flash_pad64 100 $R varlen --chars 9000 --steps 120 --pad-multiple 64 $C
  run var9k_pack 100 $R varlen --chars 9000 --steps 120 --pack $C
  ;;
warmup)   # WarmUpLengthBuckets (not measured yet): buckets of 64 with and without the warm-up, beside the fixed-length rows
  run fixed20k 90 $R varlen --chars 20000 --steps 120 $C
  run var9k_pad64_warm 100 $R varlen --chars 9000 --steps 120 --pad-multiple 64 $C
  run var9k_pad64_cold 100 $R varlen --chars 9000 --steps 120 --pad-multiple 64 --no-warmup $C
  ;;
esac
