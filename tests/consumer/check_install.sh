#!/usr/bin/env bash
# Installs a built vitscope into a temporary prefix, builds tests/consumer against it with
# find_package(vitscope) and runs it on the tiny shipped model and the demo model's pipeline.
# Usage: check_install.sh BUILD_DIR SOURCE_DIR CXX_COMPILER [LINK_FLAGS]
# LINK_FLAGS: what the consumer must link with besides vitscope (the sanitizers of such a build).
set -euo pipefail
build_dir=$1 source_dir=$2 cxx=$3 link_flags=${4:-}

work=$(mktemp -d "${TMPDIR:-/tmp}/vitscope_consumer_XXXXXX")
trap 'rm -rf "$work"' EXIT

cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/tests/consumer" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_EXE_LINKER_FLAGS="$link_flags" \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build"
"$work/build/consumer" "$source_dir/assets/models/tiny.safetensors" \
  "$source_dir/assets/models/demo.safetensors" "$source_dir/assets/images/shapes_1.png"
