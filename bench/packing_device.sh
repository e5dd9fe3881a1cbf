#!/bin/bash
# ON the GPU machine from the project root: PackSequences (packed batches padded to one width) vs unpacked through the
# estimator (varlen workload), on 3,000- and 9,000-character rows. Needs the bench app published and compressed into
# .gpu/lead/app.tar.xz (dotnet publish bench -r linux-x64 --self-contained false, CPU libtorch removed, as
# ../shared/gpu/stage.sh does) and the .NET runtime tarball in .gpu/common (see bench/results/2026-12-02-h200-packing).
O=${OUT:-/tmp/out}; mkdir -p $O /tmp/lead-app; tar -C /tmp/lead-app -xJf .gpu/lead/app.tar.xz
R="bash bench/run_app_gpu.sh /tmp/lead-app/app Microsoft.ML.Qwen3Moe.Benchmarks.dll"
C="--corpus bench/data/bench-corpus.txt --tokenizer tests/Fixtures/tokenizer --steps 30 --score-rows 16"
log() { tee -a $O/log.txt; }
run() { local n=$1 t=$2; shift 2; echo "== $n: $*" | log; timeout $t "$@" > $O/$n.txt 2>&1; echo "rc=$?" | log
  grep -E "^\||^FIT|^TRANSFORM|^varlen|failed|Exception|PackSequences" $O/$n.txt | cut -c1-600 | log; }
nvidia-smi --query-gpu=name --format=csv,noheader | log
run var3k 55 $R varlen --chars 3000 $C
run var3k_pack 55 $R varlen --chars 3000 --pack $C
run var9k 55 $R varlen --chars 9000 $C
run var9k_pack 55 $R varlen --chars 9000 --pack $C
