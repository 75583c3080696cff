#!/usr/bin/env bash
# Installs every Debian package vitscope needs to build, run and test; skips what is present.
# Usage: scripts/setup.sh [--tests] [--tools] [--bench]
#   --tests adds what only the test suite uses: chromium (the gallery check), nodejs (the lint of
#   the gallery's JS, CSS and HTML), xvfb and xdotool (the vitscope-demo check), Slurm and munge
#   (the sharded run on a one-node cluster), python3-yaml (the Kubernetes manifest's check);
#   --tools adds python3-torch for tools/ and bench/; --bench adds python3-matplotlib
#   (bench/python_folder_run.py), nodejs and npm, and installs onnxruntime-node into
#   bench/node_modules for bench/compare_onnxruntime.py (use it with --tools).
set -euo pipefail

packages=(build-essential cmake pkg-config
          libxtensor-dev libxtensor-blas-dev libxsimd-dev libopenblas-dev
          libopencv-dev catch2 libcli11-dev nlohmann-json3-dev zlib1g-dev
          clang-14 libclang-rt-14-dev)  # clang and libFuzzer for scripts/fuzz.sh
bench=0
for option in "$@"; do
  case "$option" in
    --tests) packages+=(chromium nodejs xvfb xdotool slurmctld slurmd slurm-client munge
                        python3-yaml) ;;
    --tools) packages+=(python3-torch python3-numpy python3-opencv python3-torchvision) ;;
    # NodeSource's nodejs carries its own npm and conflicts with Debian's npm package.
    --bench) packages+=(nodejs python3-matplotlib); command -v npm >/dev/null || packages+=(npm); bench=1 ;;
    *) echo "setup.sh: unknown option $option" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  sudo_cmd=()
  if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

if ((bench)); then
  # The version bench/package.json pins. Its install script downloads extra libraries from a host
  # that may be unreachable; without it the package still carries its CPU library, all we use.
  cd "$(dirname "$0")/../bench"
  npm install --ignore-scripts --no-audit --no-fund --no-package-lock
fi
