#!/usr/bin/env python3
"""Regenerates tests/fixtures/image/<case>/ and assets/models/random.safetensors from seeded PyTorch runs.

Usage (Debian's python3-torch and python3-opencv only import from the system interpreter):
    /usr/bin/python3 tools/make_image_goldens.py

Each case folder holds model.safetensors (tools/reference_model.py's export_image_model), small
synthetic PNG inputs (one batch, in case.json order) and, per image, the reference outputs cropped to
its own token grid: <stem>.features.npy (E, h_i, w_i), <stem>.logits.npy (K, h_i, w_i) with a head on
token outputs, <stem>.queries.npy (Q, E) and <stem>.query_logits.npy (Q, K) for query models.
case.json:
    {"description", "tolerance", "model", "size", "images": [...],
     "expected": {image: {"features": ..., "logits": ..., "queries": ..., "query_logits": ...}},
     "grid": {image: [h_i, w_i]}}

The references run on PyTorch's slow path (eval(), grad enabled; see reference_model.py), with one
thread so reruns give bit-identical files; each case seeds torch and numpy from its own name. Every
batch of several images is also run image by image: the spec makes batching invisible, so the cropped
outputs must agree (asserted within 1e-5).
"""

import json
import shutil
import sys
import zlib
from pathlib import Path
from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_model import (ImageTransformer, export_image_model, load_image_model,  # noqa: E402
                             reference_mode, run_images)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "image"
TOLERANCE = 1e-4
INVARIANCE_TOLERANCE = 1e-5
OUTPUT_KEYS = ("features", "logits", "queries", "query_logits")


# ---------------------------------------------------------------------------------------------
# Weights

def seeded(name: str) -> np.random.RandomState:
    seed = zlib.crc32(name.encode())
    torch.manual_seed(seed)
    return np.random.RandomState(seed)


def randomize(model: ImageTransformer) -> None:
    """Re-draws every parameter so biases, LayerNorms and embeddings are exercised (not left at 0/1)."""
    with torch.no_grad():
        for sub in model.modules():
            for name, param in sub.named_parameters(recurse=False):
                if sub is model and name == "pos_embed":
                    param.normal_(0.0, 1.0)
                elif isinstance(sub, nn.Embedding):  # query_embed
                    param.normal_(0.0, 1.0)
                elif "bias" in name:  # in_proj_bias, Linear/Conv2d/LayerNorm bias
                    param.normal_(0.0, 0.3)
                elif isinstance(sub, nn.LayerNorm):
                    param.normal_(1.0, 0.3)
                else:
                    nn.init.xavier_uniform_(param)


# ---------------------------------------------------------------------------------------------
# Synthetic input images: smooth gradients plus filled shapes

def smooth_field(rng: np.random.RandomState, h: int, w: int) -> np.ndarray:
    """(h, w) float64 in [0, 1]: a tilted gradient plus a low-frequency wave."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    a, b = rng.uniform(-1.0, 1.0, size=2)
    fy, fx, phase = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0.0, 2 * np.pi)
    ramp = (a * yy / h + b * xx / w + 1.0) / 2.0  # roughly in [0, 1]
    wave = 0.5 + 0.5 * np.sin(np.pi * (fy * yy / h + fx * xx / w) + phase)
    return np.clip(0.6 * ramp + 0.4 * wave, 0.0, 1.0)


def draw_shapes(image: np.ndarray, rng: np.random.RandomState, peak: int) -> None:
    """A disc, a square and a triangle with random colours (in [0, peak]) at random places."""
    h, w = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]

    def colour():
        values = [int(v) for v in rng.randint(0, peak + 1, size=channels)]
        return values[0] if channels == 1 else tuple(values)

    cy, cx, r = rng.randint(0, h), rng.randint(0, w), rng.randint(3, max(4, min(h, w) // 3))
    cv2.circle(image, (int(cx), int(cy)), int(r), colour(), thickness=-1)
    y0, x0, side = rng.randint(0, h), rng.randint(0, w), rng.randint(4, max(5, min(h, w) // 2))
    cv2.rectangle(image, (int(x0), int(y0)), (int(x0 + side), int(y0 + side)), colour(), thickness=-1)
    corners = np.stack([rng.randint(0, w, size=3), rng.randint(0, h, size=3)], axis=1).astype(np.int32)
    cv2.fillPoly(image, [corners], colour())


def synthetic_image(rng: np.random.RandomState, h: int, w: int, kind: str) -> np.ndarray:
    """kind: "rgb" (8-bit BGR), "gray" (8-bit, 2-D), "rgba" (8-bit BGRA, alpha varying 0..255), "rgb16" (16-bit BGR)."""
    peak = 65535 if kind == "rgb16" else 255
    dtype = np.uint16 if kind == "rgb16" else np.uint8
    channels = 1 if kind == "gray" else 3
    planes = [smooth_field(rng, h, w) for _ in range(channels)]
    image = np.ascontiguousarray(np.stack(planes, axis=2) * peak + 0.5, dtype=np.float64)
    image = image.astype(dtype)
    if kind == "gray":
        image = np.ascontiguousarray(image[:, :, 0])
    draw_shapes(image, rng, peak)
    if kind == "rgba":
        alpha = (smooth_field(rng, h, w) * 255.0 + 0.5).astype(np.uint8)
        alpha[: h // 4, : w // 4] = 0      # fully transparent corner
        alpha[-(h // 4):, -(w // 4):] = 255  # fully opaque corner
        image = np.ascontiguousarray(np.concatenate([image, alpha[:, :, None]], axis=2))
    return image


# ---------------------------------------------------------------------------------------------
# Cases

def max_abs_diff(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a if k != "grid")


def write_case(name: str, description: str, model: ImageTransformer, size: int, images: Dict[str, np.ndarray]) -> None:
    """Writes tests/fixtures/image/<name>/ for `images` (file name -> cv2 array), run as one batch."""
    assert size == model.image_size, "case.json's size is the model's image_size"
    folder = FIXTURES / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model_path = folder / "model.safetensors"
    export_image_model(model, str(model_path))
    names = list(images)
    for file_name, image in images.items():
        assert cv2.imwrite(str(folder / file_name), image), file_name
    paths = [str(folder / n) for n in names]

    reference_mode(model)
    outputs = run_images(model, paths, size)
    reloaded = run_images(load_image_model(str(model_path)), paths, size)
    for out, again in zip(outputs, reloaded):
        assert max_abs_diff(out, again) == 0.0, f"{name}: the exported file does not reproduce the model"

    invariance = None
    if len(paths) > 1:  # the spec's padding invariance: an image alone gives what it gives in the batch
        invariance = 0.0
        for path, out in zip(paths, outputs):
            alone = run_images(model, [path], size)[0]
            assert alone["grid"] == out["grid"]
            invariance = max(invariance, max_abs_diff(alone, out))
        assert invariance <= INVARIANCE_TOLERANCE, f"{name}: batching changes outputs by {invariance}"

    expected, grid = {}, {}
    for file_name, out in zip(names, outputs):
        stem = Path(file_name).stem
        expected[file_name] = {}
        for key in OUTPUT_KEYS:
            if key in out:
                assert np.isfinite(out[key]).all(), f"{name}: non-finite {key}"
                np.save(folder / f"{stem}.{key}.npy", out[key])
                expected[file_name][key] = f"{stem}.{key}.npy"
        grid[file_name] = list(out["grid"])

    case = {"description": description, "tolerance": TOLERANCE, "model": "model.safetensors", "size": size,
            "images": names, "expected": expected, "grid": grid}
    (folder / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    total = sum(f.stat().st_size for f in folder.iterdir())
    shapes = ", ".join(f"{n} {out['grid'][0]}x{out['grid'][1]}" for n, out in zip(names, outputs))
    note = "" if invariance is None else f", batch vs alone max|diff| = {invariance:.2e}"
    print(f"{name:40s} {total / 1024:5.1f} KB, grids: {shapes}{note}")
    assert total < 100 * 1024, f"{name}: case folder is {total} bytes"


def case_sine_input_tokens() -> None:
    name = "a_sine_input_tokens_postnorm"
    rng = seeded(name)
    model = ImageTransformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32,
                             activation="relu", norm_first=False, patch_size=8, image_size=37, position="sine",
                             position_mode="input", target="tokens", num_classes=3,
                             class_names=["background", "disc", "square"])
    randomize(model)
    write_case(name, "sine position, mode input, target tokens, post-norm, relu, 1+1 layers, head K=3 with "
                     "class names; one 30x37 RGB image: longer side already 37 (no resize), not a multiple of "
                     "p=8 (padded to 32x40, partial last row and column of patches)",
               model, 37, {"a.png": synthetic_image(rng, 30, 37, "rgb")})


def case_learned_attention_queries() -> None:
    name = "b_learned_attention_queries_prenorm"
    rng = seeded(name)
    model = ImageTransformer(d_model=16, nhead=4, num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=32,
                             activation="gelu", norm_first=True, patch_size=8, image_size=40, position="learned",
                             position_mode="attention", target="queries", num_queries=5, pos_grid=(3, 5),
                             num_classes=3, class_names=["background", "disc", "square"])
    randomize(model)
    write_case(name, "learned position (pos_embed grid 3x5), mode attention (DETR), target queries Q=5, "
                     "pre-norm, gelu, 1+2 layers, head K=3 on the queries; batch of two RGB images: "
                     "40x28 (grid 5x4: bicubic pos_embed) and 24x40 (grid 3x5: pos_embed as is)",
               model, 40, {"a.png": synthetic_image(rng, 40, 28, "rgb"), "b.png": synthetic_image(rng, 24, 40, "rgb")})


def case_none_encoder_only() -> None:
    name = "c_none_encoder_only_shrink_gray"
    rng = seeded(name)
    model = ImageTransformer(d_model=24, nhead=4, num_encoder_layers=2, num_decoder_layers=0, dim_feedforward=48,
                             activation="relu", norm_first=False, patch_size=4, image_size=32, position="none",
                             position_mode="input", num_classes=0)
    randomize(model)
    write_case(name, "position none, encoder only (num_decoder_layers 0, no target key, no decoder tensors), "
                     "post-norm, relu, 2 layers, d_model 24, no head, p=4, size 32; batch: a grayscale 8-bit PNG 48x60 "
                     "shrunk with INTER_AREA to 26x32 (non-integer factor), and an RGB 64x40 shrunk to 32x20 "
                     "(factor 2)",
               model, 32, {"gray.png": synthetic_image(rng, 48, 60, "gray"),
                           "rgb.png": synthetic_image(rng, 64, 40, "rgb")})


def case_sine_attention_batch() -> None:
    name = "d_sine_attention_tokens_batch3"
    rng = seeded(name)
    model = ImageTransformer(d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=48,
                             activation="relu", norm_first=False, patch_size=8, image_size=48, position="sine",
                             position_mode="attention", target="tokens", num_classes=3,
                             class_names=["background", "disc", "square"])
    randomize(model)
    write_case(name, "sine position, mode attention (DETR), target tokens, post-norm, relu, 2+1 layers, head K=3; "
                     "batch of 3 sizes: RGBA 36x48 with varying alpha (no resize), 16-bit RGB 60x44 shrunk "
                     "(INTER_AREA) to 48x35, RGB 20x30 enlarged (INTER_LINEAR) to 32x48",
               model, 48, {"rgba.png": synthetic_image(rng, 36, 48, "rgba"),
                           "deep.png": synthetic_image(rng, 60, 44, "rgb16"),
                           "rgb.png": synthetic_image(rng, 20, 30, "rgb")})


def case_learned_input_tokens() -> None:
    name = "e_learned_input_tokens_enlarge"
    rng = seeded(name)
    model = ImageTransformer(d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=32,
                             activation="relu", norm_first=True, patch_size=8, image_size=40, position="learned",
                             position_mode="input", target="tokens", pos_grid=(4, 4), num_classes=0)
    randomize(model)
    write_case(name, "learned position (pos_embed grid 4x4), mode input, target tokens, pre-norm, relu, 2+1 "
                     "layers, no head; batch of 2 sizes: RGB 20x30 enlarged (INTER_LINEAR) to 27x40 (grid 4x5) "
                     "and RGB 40x24 (no resize, grid 5x3); both grids bicubic",
               model, 40, {"small.png": synthetic_image(rng, 20, 30, "rgb"),
                           "tall.png": synthetic_image(rng, 40, 24, "rgb")})


def case_sine_input_queries() -> None:
    name = "f_sine_input_queries"
    rng = seeded(name)
    model = ImageTransformer(d_model=16, nhead=4, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32,
                             activation="relu", norm_first=False, patch_size=6, image_size=30, position="sine",
                             position_mode="input", target="queries", num_queries=4, num_classes=2,
                             class_names=["background", "triangle"])
    randomize(model)
    write_case(name, "sine position, mode input, target queries Q=4 (tgt = query_embed, no target mask), "
                     "post-norm, relu, 1+1 layers, head K=2 on the queries, p=6; one RGB 30x22 image "
                     "(no resize, grid 5x4 with a partial last column)",
               model, 30, {"a.png": synthetic_image(rng, 30, 22, "rgb")})


def case_stem_attention_batch() -> None:
    name = "g_stem_attention_tokens_batch2"
    rng = seeded(name)
    model = ImageTransformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32,
                             activation="relu", norm_first=True, patch_size=8, image_size=48, position="sine",
                             position_mode="attention", target="tokens", num_classes=3,
                             class_names=["background", "disc", "square"], stem_channels=[6, 8, 12])
    randomize(model)
    write_case(name, "convolutional stem (3 stride-2 3x3 steps of 6, 8, 12 channels, ReLU, then a 1x1 proj), "
                     "sine position, mode attention, target tokens, pre-norm, 1+1 layers, head K=3; batch of 2 "
                     "sizes: RGB 44x48 (no resize, padded to 48x48) and RGB 30x20 enlarged (INTER_LINEAR) to "
                     "48x32, so the stem runs over padding between and after the images",
               model, 48, {"wide.png": synthetic_image(rng, 44, 48, "rgb"),
                           "tall.png": synthetic_image(rng, 30, 20, "rgb")})


def random_model() -> None:
    """assets/models/random.safetensors: seeded random weights, the demo model's kinds of parts, for tests."""
    seeded("default_model")  # the seed's name from when this was vitscope's default model: same bits
    model = ImageTransformer(d_model=64, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=128,
                             activation="relu", norm_first=False, patch_size=16, image_size=224, position="sine",
                             position_mode="attention", target="tokens", num_classes=4,
                             class_names=["background", "disc", "square", "triangle"])
    with torch.no_grad():  # nn.Transformer's init (xavier_uniform_ on every matrix), here for the whole model
        for param in model.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
    path = ROOT / "assets" / "models" / "random.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    export_image_model(model, str(path))
    print(f"{'assets/models/random.safetensors':40s} {path.stat().st_size / 1024:5.1f} KB")


def main() -> None:
    # One thread: BLAS reductions then run in a fixed order, so reruns give bit-identical files.
    torch.set_num_threads(1)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    case_sine_input_tokens()
    case_learned_attention_queries()
    case_none_encoder_only()
    case_sine_attention_batch()
    case_learned_input_tokens()
    case_sine_input_queries()
    case_stem_attention_batch()
    random_model()


if __name__ == "__main__":
    main()
