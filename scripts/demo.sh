#!/usr/bin/env bash
# Installs what is missing, builds vitscope and runs its main job: every image in assets/images
# through the shipped default model, features and views written to out/.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2 --target vitscope_cli

build/apps/vitscope run assets/images --out out
echo "open out/summary.json and out/images/*/ for each image's features.npy and views"
