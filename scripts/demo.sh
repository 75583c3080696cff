#!/usr/bin/env bash
# Installs what is missing, builds vitscope and runs it on the shipped model and inputs:
# describes the model, runs a forward pass and writes the output and every attention map to out/.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2 --target vitscope_cli

vitscope=build/apps/vitscope
$vitscope info assets/models/tiny.safetensors
$vitscope forward --model assets/models/tiny.safetensors \
  --src assets/inputs/src.npy --tgt assets/inputs/tgt.npy \
  --out out/out.npy --attn-dir out/attention
echo "wrote out/out.npy and out/attention/ ($(ls out/attention | wc -l) attention maps)"
