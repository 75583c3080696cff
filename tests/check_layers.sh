#!/usr/bin/env bash
# Fails when a layer of the library includes a layer above it: nn <- io <- image <- gallery, and
# nn and io never include OpenCV. Prints every offending include as file:line: text.
# Usage: tests/check_layers.sh [SOURCE_ROOT] (default: the checkout this script is in)
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"

status=0

# check LAYER PATTERN: no header or source of LAYER has an #include matching PATTERN.
check() {
  local layer=$1 pattern=$2 dirs=()
  for dir in "include/vitscope/$layer" "src/$layer"; do
    [[ -d $dir ]] && dirs+=("$dir")
  done
  ((${#dirs[@]})) || return 0
  local found
  if found=$(grep -rnE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($pattern)" "${dirs[@]}"); then
    echo "$layer includes a layer above it:"
    echo "$found"
    status=1
  fi
}

above_nn='vitscope/(io|image|gallery)/|\.\./(io|image|gallery)/|opencv2/'
check nn "$above_nn"
# error.hpp, at the top of include/vitscope, is nn's: the base every layer shares.
if found=$(grep -nE "^[[:space:]]*#[[:space:]]*include[[:space:]]*[<\"]($above_nn)" \
           include/vitscope/error.hpp); then
  echo "include/vitscope/error.hpp (nn) includes a layer above it:"
  echo "$found"
  status=1
fi
check io 'vitscope/(image|gallery)/|\.\./(image|gallery)/|opencv2/'
check image 'vitscope/gallery/|\.\./gallery/'

((status == 0)) && echo "layers: every include runs down (nn <- io <- image <- gallery)"
exit "$status"
