#!/bin/bash
# ON the GPU machine, from the project root:  bash bench/run_app_gpu.sh <staged app folder> App.dll [args]
# Like ../shared/gpu/run.sh, but the app folder is an argument and the .NET runtime tarball is in $RUNTIME_DIR (.gpu/common).
set -euo pipefail
g=${RUNTIME_DIR:-.gpu/common}   # holds dotnet-runtime-linux-x64.tar.xz (../shared/gpu)
if [ ! -x /tmp/dotnet/dotnet ]; then mkdir -p /tmp/dotnet && tar -C /tmp/dotnet -xJf "$g/dotnet-runtime-linux-x64.tar.xz"; fi
export DOTNET_ROOT=/tmp/dotnet DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
torchlib=$(python3 -c 'import torch,os;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
appdir=$(cd "${1:?usage: run.sh <app folder> App.dll [args]}" && pwd); shift
export LD_LIBRARY_PATH="$torchlib:$appdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
app=${1:?usage: run.sh <app folder> App.dll [args]}; shift
exec /tmp/dotnet/dotnet "$appdir/$app" "$@"
