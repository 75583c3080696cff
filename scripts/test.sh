#!/usr/bin/env bash
# Installs what is missing, builds vitscope and its tests and runs the whole suite twice: in the
# Release build, then in a build under AddressSanitizer and UndefinedBehaviorSanitizer; builds the
# layers without OpenCV alone and runs their tests; then fuzzes the file parsers for a minute each
# (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --tests

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
ctest --test-dir build --output-on-failure -j2

cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVITSCOPE_SANITIZE=ON
cmake --build build-sanitize -j2
ctest --test-dir build-sanitize --output-on-failure -j2

# vitscope_nn and vitscope_io with no OpenCV at all (about a minute on 2 cores).
cmake -S . -B build-nn -DCMAKE_BUILD_TYPE=Release -DVITSCOPE_BUILD_IMAGE=OFF
cmake --build build-nn -j2
ctest --test-dir build-nn --output-on-failure -j2

bash scripts/fuzz.sh
