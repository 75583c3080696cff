#!/usr/bin/env python3
"""Regenerates tests/fixtures/interpolate/: PyTorch's F.interpolate on one seeded (1, E, gh, gw) grid
for each of the model file's pos_resize rules, enlarging, shrinking and both at once.

Usage (Debian's python3-torch only imports from the system interpreter):
    /usr/bin/python3 tools/make_interpolate_fixtures.py

case.json: {"grid": "grid.npy", "tolerance", "cases": [{"rule", "size": [h, w], "expected": file}]}.
Rules: size = F.interpolate(size=(h, w)); dino = DINO's scale_factor = ((h + 0.1) / gh, (w + 0.1) / gw);
size-antialias = F.interpolate(size=(h, w), antialias=True) (timm's resample_abs_pos_embed); all bicubic,
align_corners=False.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

FOLDER = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "interpolate"
SIZES = [(9, 11), (3, 4), (7, 3), (5, 7)]  # enlarge, shrink, one of each, the grid's own (kept as is)


def resize(grid: torch.Tensor, rule: str, h: int, w: int) -> torch.Tensor:
    gh, gw = grid.shape[2:]
    if (h, w) == (gh, gw):
        return grid
    if rule == "dino":
        return F.interpolate(grid, scale_factor=((h + 0.1) / gh, (w + 0.1) / gw), mode="bicubic",
                             align_corners=False)
    return F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False,
                         antialias=rule == "size-antialias")


def main() -> None:
    torch.manual_seed(7)
    grid = torch.randn(1, 3, 5, 7)
    if FOLDER.exists():
        shutil.rmtree(FOLDER)
    FOLDER.mkdir(parents=True)
    np.save(FOLDER / "grid.npy", grid[0].numpy())
    cases = []
    for rule in ("size", "dino", "size-antialias"):
        for h, w in SIZES:
            out = resize(grid, rule, h, w)
            assert tuple(out.shape[2:]) == (h, w), (rule, h, w, out.shape)
            name = f"{rule}_{h}x{w}.npy"
            np.save(FOLDER / name, out[0].numpy())
            cases.append({"rule": rule, "size": [h, w], "expected": name})
    (FOLDER / "case.json").write_text(json.dumps({"grid": "grid.npy", "tolerance": 1e-5, "cases": cases}, indent=2) + "\n")
    print(f"{len(cases)} cases in {FOLDER}")


if __name__ == "__main__":
    main()
