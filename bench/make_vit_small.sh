#!/usr/bin/env bash
# Writes a ViT-S/16 (E=384, 6 heads, 12 layers, 224 px, 1000 classes) built by torchvision's own
# VisionTransformer with seeded random weights (nothing can be downloaded), imported with
# tools/import_model.py: a model of the size users run, for bench/folder_run.sh.
# Usage: bench/make_vit_small.sh OUT.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/make_vit_small.sh OUT.safetensors}
checkpoint=$(mktemp --suffix .pth)
trap 'rm -f "$checkpoint"' EXIT
/usr/bin/python3 - "$checkpoint" <<'PY'
import sys
import torch
import torchvision
torch.manual_seed(0)
model = torchvision.models.VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=6,
                                             hidden_dim=384, mlp_dim=1536, num_classes=1000)
torch.save(model.state_dict(), sys.argv[1])
PY
/usr/bin/python3 tools/import_model.py "$checkpoint" --family torchvision-vit --out "$out"
