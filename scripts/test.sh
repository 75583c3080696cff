#!/usr/bin/env bash
# Installs what is missing, builds vitscope and its tests (Release, -j2) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
ctest --test-dir build --output-on-failure -j2
