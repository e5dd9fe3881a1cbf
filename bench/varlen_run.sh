#!/bin/bash
# Runs ON the GPU machine, from the project root: bash .gpu/buckets/varlen_run.sh WORKLOAD [args]. Unpacks the .NET runtime
# and the benchmarks app (app.tar.xz, kept compressed to fit the device's 64 MiB tree) beside this script, points TorchSharp
# at the machine's CUDA libtorch, and runs the app.
set -euo pipefail
g=$(cd "$(dirname "$0")" && pwd)
if [ ! -x /tmp/dotnet/dotnet ]; then mkdir -p /tmp/dotnet && tar -C /tmp/dotnet -xJf "$g/dotnet-runtime-linux-x64.tar.xz"; fi
a=/tmp/varlen-app; if [ ! -f $a/stamp ] || [ "$(cat $a/stamp)" != "$(stat -c %Y "$g/app.tar.xz")" ]; then
  rm -rf $a && mkdir -p $a && tar -C $a -xJf "$g/app.tar.xz" && stat -c %Y "$g/app.tar.xz" > $a/stamp; fi
export DOTNET_ROOT=/tmp/dotnet DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
torchlib=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
export LD_LIBRARY_PATH="$torchlib:$a/app${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec /tmp/dotnet/dotnet "$a/app/Microsoft.ML.Qwen3Moe.Benchmarks.dll" "$@"
