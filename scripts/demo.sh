#!/usr/bin/env bash
# Installs what is missing, builds vitscope and runs its main job: every image in assets/images
# through the shipped demo model: features, views and the gallery (out/index.html) in out/.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2 --target vitscope_cli

build/apps/vitscope run assets/images --out out
echo "open out/index.html for the gallery; out/summary.json lists every image and its files"
