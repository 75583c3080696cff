#!/usr/bin/env python3
"""Regenerates tests/fixtures/preprocess/: the preprocessed pixels of real and synthetic images per
resize_mode and interpolation, from tools/reference_model.py's preprocess (cv2, as the C++ does).

Usage (Debian's python3-torch, python3-torchvision and python3-opencv import from the system
interpreter only):
    /usr/bin/python3 tools/make_preprocess_fixtures.py

First it asserts that reference_model.py's shorter-crop has torchvision 0.14's geometry: for many
image sizes, Resize(resize_size)'s output size (on tensors and on PIL images) and center_crop's
window (compared on an image whose values are its pixel indices, so the crop offsets and the zero
border must be exactly torchvision's). It prints how far vitscope's OpenCV pixels are from
torchvision's own pipelines (informative: different filters, not asserted beyond a sanity bound).

cases.json: {"tolerance", "cases": [{"name", "images": [path relative to the repo], "size",
"patch_size", "resize_mode", "resize_size" (null: the default), "interpolation", "pixels"
(B, C, H, W) float32 .npy, "pixel_mask" (B, H, W) bool .npy, "resized": [[w, h]] (the pixels' size
before padding), "before_crop": [[w, h]], "crop": [[x, y, w, h]]}],
"model": {"file", "image", "features", "tolerance"}}: a small seeded encoder-only model whose file
names resize_mode shorter-crop, resize_size 248 and interpolation cubic, and its reference features
(E, 14, 14) on chelsea.jpg at image_size 224, p 16, for `vitscope run` to reproduce.
"""

import json
import math
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch
import torchvision
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_model import (CROP_PCT, DETR_MAX_SIZE, IMAGENET_MEAN, IMAGENET_STD, ImageTransformer,  # noqa: E402
                             center_crop, center_crop_window, export_image_model, load_image,
                             load_image_model, preprocess, resize_and_crop, resize_longer_side,
                             run_images, shorter_max_size, shorter_side_size)
from safetensors_io import read_safetensors  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "preprocess"
ASSETS = "assets/images"
TOLERANCE = 1e-5  # the same cv2 calls on the same float32 pixels: expected exact


# ---------------------------------------------------------------------------------------------
# shorter-crop against torchvision 0.14

def check_torchvision_geometry() -> int:
    """Asserts Resize(resize_size) sizes and center_crop windows equal torchvision's; returns the count."""
    assert torchvision.__version__.startswith("0.14"), f"torchvision {torchvision.__version__}, expected 0.14"
    image_sizes = [(300, 451), (341, 512), (512, 512), (23, 37), (70, 30), (20, 300), (255, 256),
                   (256, 255), (3, 99), (101, 7), (1, 1), (480, 640), (640, 480), (333, 500)]
    crops = [(224, None), (224, 256), (40, 45), (32, 19), (32, 20), (24, 27), (384, None), (7, 7),
             (9, 4), (224, 224), (16, 17), (31, 33)]
    checked = 0
    for h, w in image_sizes:
        for size, resize_size in crops:
            rs = resize_size or math.floor(size / CROP_PCT)
            new_h, new_w = shorter_side_size(h, w, rs)
            on_tensor = TF.resize(torch.zeros(1, h, w), [rs])
            on_pil = TF.resize(Image.new("F", (w, h)), [rs])
            assert tuple(on_tensor.shape[1:]) == (new_h, new_w), (h, w, rs, on_tensor.shape, (new_h, new_w))
            assert (on_pil.size[1], on_pil.size[0]) == (new_h, new_w), (h, w, rs, on_pil.size)
            # Pixel values 1.. name their position: the window and the zero border show exactly.
            index = torch.arange(1, new_h * new_w + 1, dtype=torch.float64).reshape(1, new_h, new_w)
            theirs = TF.center_crop(index, [size])[0].numpy()
            ours = center_crop(index[0].numpy()[:, :, None], size)[:, :, 0]
            assert theirs.shape == ours.shape == (size, size), (h, w, size, rs, theirs.shape, ours.shape)
            assert np.array_equal(theirs, ours), (h, w, size, rs, center_crop_window(new_h, new_w, size))
            # The same through PIL (torchvision's default input): its crop must hold the same indices.
            pil_index = Image.fromarray(index[0].numpy().astype(np.float32), mode="F")
            pil_theirs = np.asarray(TF.center_crop(pil_index, [size]), dtype=np.float64)
            assert np.array_equal(pil_theirs, ours), (h, w, size, rs, "PIL")
            checked += 1
    # Python's round halves to even: a window offset of 2.5 is 2, of 13.5 is 14.
    assert center_crop_window(45, 67, 40) == (2, 14)
    return checked


def compare_with_torchvision_pixels() -> None:
    """How far vitscope's OpenCV shorter-crop is from torchvision's pipelines on a real photo."""
    rgb = load_image(str(ROOT / ASSETS / "chelsea.jpg"))  # (300, 451, 3) float32 in [0, 255]
    ours_linear = resize_and_crop(rgb, 16, 224, "shorter-crop", None, "linear")
    ours_area = resize_and_crop(rgb, 16, 224, "shorter-crop", None, "area-linear")
    tensor = torch.from_numpy(rgb.transpose(2, 0, 1).copy())
    bilinear = T.Compose([T.Resize(256, antialias=False), T.CenterCrop(224)])(tensor).numpy().transpose(1, 2, 0)
    pil = Image.fromarray(np.round(rgb).astype(np.uint8))
    pil_out = np.asarray(T.Compose([T.Resize(256), T.CenterCrop(224)])(pil), dtype=np.float32)
    d_tensor = np.abs(ours_linear - bilinear)
    d_pil = np.abs(ours_area - pil_out)
    print(f"chelsea.jpg shorter-crop 256/224, 0..255 scale: linear vs torchvision tensor bilinear "
          f"max {d_tensor.max():.4f} mean {d_tensor.mean():.4f}; area-linear vs torchvision PIL "
          f"(bilinear, antialiased, uint8) max {d_pil.max():.2f} mean {d_pil.mean():.3f}")
    assert d_tensor.max() < 1e-2, "INTER_LINEAR and torch's bilinear (align_corners=False) should agree"
    assert d_pil.mean() < 2.0, "the PIL pipeline should differ only by filters and uint8 rounding"


# ---------------------------------------------------------------------------------------------
# Fixtures

def synthetic_images() -> List[str]:
    """Small PNGs with smooth and sharp content: enlarging, thin and tall cases."""
    rng = np.random.RandomState(15)
    made = []
    for name, (w, h) in {"small_37x23.png": (37, 23), "thin_300x20.png": (300, 20),
                         "tall_30x70.png": (30, 70)}.items():
        y, x = np.mgrid[0:h, 0:w]
        smooth = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 0 * x], axis=2)
        noise = rng.randint(0, 256, size=(h, w, 3))
        image = np.where((x // 4 + y // 4)[:, :, None] % 2 == 0, smooth, noise).astype(np.uint8)
        path = FIXTURES / name
        assert cv2.imwrite(str(path), image)
        made.append(str(path.relative_to(ROOT)))
    return made


def geometry(rgb: np.ndarray, patch_size: int, size: int, resize_mode: str, resize_size: Optional[int],
             max_size: Optional[int]) -> Tuple[List[int], List[int]]:
    """(before_crop [w, h], crop [x, y, w, h]) as the C++ ImageBatch reports them."""
    h0, w0 = rgb.shape[:2]
    if resize_mode == "shorter-max":
        new_h, new_w = shorter_max_size(h0, w0, size, max_size or DETR_MAX_SIZE)
        return [new_w, new_h], [0, 0, new_w, new_h]
    if resize_mode == "shorter-crop":
        new_h, new_w = shorter_side_size(h0, w0, resize_size or math.floor(size / CROP_PCT))
        top, left = center_crop_window(new_h, new_w, size)
        return [new_w, new_h], [left, top, size, size]
    if resize_mode == "stretch":
        return [size, size], [0, 0, size, size]
    h, w = resize_longer_side(rgb, size).shape[:2]
    if resize_mode == "longer":
        return [w, h], [0, 0, w, h]
    keep = lambda side: side if side < patch_size else side - side % patch_size  # noqa: E731
    return [w, h], [0, 0, keep(w), keep(h)]


def write_case(name: str, images: List[str], size: int, patch_size: int, resize_mode: str,
               resize_size: Optional[int], interpolation: str, max_size: Optional[int] = None) -> dict:
    rgbs = [load_image(str(ROOT / path)) for path in images]
    pixels, pixel_mask = preprocess(rgbs, patch_size, size, IMAGENET_MEAN, IMAGENET_STD,
                                    resize_mode, resize_size, interpolation, max_size)
    np.save(FIXTURES / f"{name}.pixels.npy", pixels.numpy().astype(np.float32))
    np.save(FIXTURES / f"{name}.pixel_mask.npy", pixel_mask.numpy())
    seen = [resize_and_crop(rgb, patch_size, size, resize_mode, resize_size, interpolation, max_size)
            for rgb in rgbs]
    geometries = [geometry(rgb, patch_size, size, resize_mode, resize_size, max_size) for rgb in rgbs]
    for (before, crop), s in zip(geometries, seen):
        assert [crop[2], crop[3]] == [s.shape[1], s.shape[0]], (name, crop, s.shape)
    print(f"{name}: {[Path(p).name for p in images]} -> pixels {list(pixels.shape)}, "
          f"resized {[[s.shape[1], s.shape[0]] for s in seen]}, crops {[c for _, c in geometries]}")
    return {"name": name, "images": images, "size": size, "patch_size": patch_size,
            "resize_mode": resize_mode, "resize_size": resize_size, "interpolation": interpolation,
            "max_size": max_size,
            "pixels": f"{name}.pixels.npy", "pixel_mask": f"{name}.pixel_mask.npy",
            "resized": [[s.shape[1], s.shape[0]] for s in seen],
            "before_crop": [b for b, _ in geometries], "crop": [c for _, c in geometries]}


def write_model_case(image: str) -> dict:
    """A model file naming its preprocessing; its features on `image` as run_images computes them."""
    torch.manual_seed(15)
    model = ImageTransformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=0,
                             dim_feedforward=32, position="sine", position_mode="input")
    model.resize_mode, model.resize_size, model.interpolation = "shorter-crop", 248, "cubic"
    path = FIXTURES / "model_shorter_crop.safetensors"
    export_image_model(model, str(path))
    _, metadata = read_safetensors(str(path))
    assert (metadata["resize_mode"], metadata["resize_size"], metadata["interpolation"]) == \
        ("shorter-crop", "248", "cubic"), metadata
    loaded = load_image_model(str(path))  # the keys come back as the attributes
    assert (loaded.resize_mode, loaded.resize_size, loaded.interpolation) == ("shorter-crop", 248, "cubic")
    unset = ImageTransformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=0,
                             dim_feedforward=32, position="sine", position_mode="input")
    export_image_model(unset, str(FIXTURES / "unset.safetensors"))
    _, unset_metadata = read_safetensors(str(FIXTURES / "unset.safetensors"))
    (FIXTURES / "unset.safetensors").unlink()
    assert not {"resize_mode", "resize_size", "interpolation"} & set(unset_metadata), "None means absent"
    (item,) = run_images(loaded, [str(ROOT / image)])
    assert item["grid"] == (14, 14), item["grid"]
    np.save(FIXTURES / "model_shorter_crop.features.npy", item["features"])
    print(f"model_shorter_crop: {Path(image).name} -> features {list(item['features'].shape)}")
    return {"file": path.name, "image": image, "features": "model_shorter_crop.features.npy",
            "tolerance": 1e-4}


def main() -> int:
    print(f"torchvision {torchvision.__version__}: shorter-crop geometry agrees in "
          f"{check_torchvision_geometry()} (image size, crop, resize) cases")
    compare_with_torchvision_pixels()

    FIXTURES.mkdir(parents=True, exist_ok=True)
    for old in FIXTURES.glob("*.npy"):
        old.unlink()
    small, thin, tall = synthetic_images()
    chelsea, coffee, camera = f"{ASSETS}/chelsea.jpg", f"{ASSETS}/coffee.jpg", f"{ASSETS}/camera.png"
    rocket, rgba = f"{ASSETS}/rocket_16bit.png", f"{ASSETS}/chelsea_rgba.png"
    cases = [
        # name, images, size, p, resize_mode, resize_size, interpolation
        ("longer_area", [chelsea], 56, 16, "longer", None, "area-linear"),
        ("longer_linear_enlarge", [small], 50, 16, "longer", None, "linear"),
        ("longer_cubic", [coffee], 60, 16, "longer", None, "cubic"),
        ("shorter_crop_default", [chelsea], 64, 16, "shorter-crop", None, "area-linear"),  # resize floor(73.1)
        ("shorter_crop_halves", [coffee], 40, 16, "shorter-crop", 45, "area-linear"),  # offsets 2.5, 13.5
        ("shorter_crop_enlarge_cubic", [small], 32, 16, "shorter-crop", 40, "cubic"),
        ("shorter_crop_pad_cubic", [small], 32, 16, "shorter-crop", 19, "cubic"),  # zero border 1,1 / 6,7
        ("shorter_crop_tall_linear", [tall], 24, 8, "shorter-crop", 27, "linear"),
        ("stretch_area", [chelsea], 48, 16, "stretch", None, "area-linear"),
        ("stretch_mixed", [thin], 40, 16, "stretch", None, "area-linear"),  # one side grows: INTER_LINEAR
        ("stretch_cubic", [rocket], 36, 16, "stretch", None, "cubic"),
        ("patch_crop_area", [coffee], 70, 16, "patch-crop", None, "area-linear"),
        ("patch_crop_thin", [thin], 60, 16, "patch-crop", None, "linear"),  # 60x4: the short side kept
        ("batch_longer", [chelsea, camera, rocket], 40, 16, "longer", None, "area-linear"),
        ("batch_shorter_crop", [rgba, tall], 32, 16, "shorter-crop", None, "cubic"),
        # name, ..., max_size: DETR's shorter side size, the longer at most max_size
        ("shorter_max_free", [chelsea], 40, 16, "shorter-max", None, "area-linear", 100),  # 40 short
        ("shorter_max_capped", [thin], 20, 8, "shorter-max", None, "linear", 64),  # long side capped
        ("batch_shorter_max", [coffee, camera, tall], 36, 16, "shorter-max", None, "area-linear", 60),
    ]
    written = [write_case(*case) for case in cases]
    model = write_model_case(chelsea)
    with open(FIXTURES / "cases.json", "w") as f:
        json.dump({"tolerance": TOLERANCE, "cases": written, "model": model}, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
