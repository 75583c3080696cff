#!/usr/bin/env python3
"""Regenerates tests/fixtures/vit/<case>/: PyTorch-trained-style ViTs imported by tools/import_model.py.

Usage (Debian's python3-torch, python3-torchvision and python3-opencv import from the system interpreter):
    /usr/bin/python3 tools/make_vit_goldens.py            # all cases; prints each case's worst difference
    /usr/bin/python3 tools/make_vit_goldens.py CASE...    # only those

Each case builds the ORIGINAL module (torchvision.models.VisionTransformer itself, or tools/pytorch_vits.py's
timm / DeiT / DINO / DINOv2 / Hugging Face modules with their exact state_dict names) with seeded random
weights (biases, LayerNorms, LayerScale, tokens and positions re-drawn away from 0 / 1), torch.save's its
state_dict in a temp folder and runs `tools/import_model.py` on it to make model.safetensors. The inputs
are real photos of assets/images, referenced by repo-relative path (not copied), decoded and preprocessed by
tools/reference_model.py's load_image and preprocess (resize_mode, resize_size, interpolation), so that no
image is ever padded (these models have no padding masks); each image runs ALONE through the original
module, and its outputs are the expected files:
    <stem>.cls.npy (E), <stem>.logits.npy (K, with a head), <stem>.features.npy (E, h, w),
    <stem>.attention_cls.npy (nh, X + S): row 0 (the CLS token's) of the last block's attention,
    <stem>.attention.npy (nh, X + S, X + S): the whole last-block attention, in one small case only.
case.json: {"family", "description", "tolerance", "model", "size", "resize_mode", "resize_size",
            "interpolation", "images": [...], "grid": {image: [h, w]},
            "expected": {image: {"cls", "logits", "features", "attention_cls", "attention"}},
            "attention_module": "encoder.layers.L.self_attn"}

Before anything is written, the imported file is run through `prefix_reference` below: plain PyTorch
(nn.TransformerEncoder, F.interpolate) following docs/image_model.md's "Prefix tokens" section, knowing
nothing of the original module. It must give the original's outputs within 1e-5 (asserted; the worst
difference per case is printed): the importer's mapping is right before any C++ exists.

Runs use PyTorch's reference (slow) path (eval, grad enabled) with one thread, so reruns are bit-identical.
"""

import json
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Callable, Dict, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pytorch_vits  # noqa: E402
from reference_model import load_image, preprocess, reference_mode  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "vit"
IMPORTER = ROOT / "tools" / "import_model.py"
TOLERANCE = 1e-4
MAPPING_TOLERANCE = 1e-5
MAX_FOLDER = 300 * 1024
ATTENTION_GAIN = 2.0
IMAGES = ["assets/images/chelsea.jpg", "assets/images/astronaut.jpg", "assets/images/coffee.jpg"]
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


# =============================================================================================
# Pixels: tools/reference_model.py's preprocessing (as the C++ does it), never padded here

def model_pixels(path: str, case: Dict[str, object], meta: Dict[str, str]) -> torch.Tensor:
    """(1, 3, H, W) normalised pixels of the repo-relative image `path`, as case.json and the model file say;
    H and W are multiples of p (asserted: nothing is padded, these models have no padding masks)."""
    mean = [float(v) for v in meta["mean"].split(",")]
    std = [float(v) for v in meta["std"].split(",")]
    pixels, pixel_mask = preprocess([load_image(str(ROOT / path))], int(meta["patch_size"]), case["size"], mean, std,
                                    case["resize_mode"], case.get("resize_size"), case["interpolation"])
    assert not bool(pixel_mask.any()), f"{path}: {tuple(pixels.shape[2:])} would be padded"
    return pixels


# =============================================================================================
# The spec's definition, from the imported file alone

def prefix_reference(path: str, pixels: torch.Tensor) -> Dict[str, torch.Tensor]:
    """docs/image_model.md "Prefix tokens" on one image (1, 3, H, W), in plain PyTorch from the file alone.

    Returns cls (E), features (E, h, w), logits (K) with a head, attention (nh, X + S, X + S) of the last layer.
    """
    arrays, meta = read_safetensors(path)
    t = {name: torch.from_numpy(np.array(a)) for name, a in arrays.items()}
    e, nh, depth = int(meta["d_model"]), int(meta["nhead"]), int(meta["num_encoder_layers"])
    assert meta["num_decoder_layers"] == "0" and meta["norm_first"] == "true" and meta["activation"] == "gelu"
    assert meta["position"] == "learned" and meta["position_mode"] == "input"
    eps = float(meta["layer_norm_eps"])
    layer = nn.TransformerEncoderLayer(e, nh, int(meta["dim_feedforward"]), dropout=0.0, activation="gelu",
                                       layer_norm_eps=eps, batch_first=False, norm_first=True)
    encoder = nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(e, eps=eps), enable_nested_tensor=False)
    encoder.load_state_dict({k[len("transformer.encoder."):]: v for k, v in t.items()
                             if k.startswith("transformer.encoder.")}, strict=True)
    reference_mode(encoder)

    # Forward 1: patch embedding -> (1, E, h, w); 4: to_sequence -> (S, 1, E)
    tokens = F.conv2d(pixels, t["patch_embed.proj.weight"], t["patch_embed.proj.bias"], stride=int(meta["patch_size"]))
    _, _, h, w = tokens.shape
    seq = tokens.reshape(1, e, h * w).permute(2, 0, 1)

    # 4a: prefix tokens cls, dist, registers
    prefix = [t["cls_token"][0]]
    if meta.get("dist_token") == "true":
        prefix.append(t["dist_token"][0])
    if int(meta.get("num_register_tokens", "0")) > 0:
        prefix.append(t["register_tokens"][0])
    prefix = torch.cat(prefix, dim=0)[:, None, :]                  # (X, 1, E)
    x_count = prefix.shape[0]

    # 4b: positions: P prefix rows as stored; the patch rows resized to (h, w) by pos_resize
    pos = t["pos_embed"][0]                                        # (P + gh*gw, E)
    p_rows = int(meta["pos_embed_prefix"])
    gh, gw = (int(v) for v in meta["pos_embed_grid"].split(","))
    grid = pos[p_rows:].reshape(gh, gw, e).permute(2, 0, 1)[None]  # (1, E, gh, gw)
    if (h, w) != (gh, gw):
        if meta["pos_resize"] == "dino":
            grid = F.interpolate(grid, scale_factor=((h + 0.1) / gh, (w + 0.1) / gw), mode="bicubic",
                                 align_corners=False)
        elif meta["pos_resize"] == "size-antialias":
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        else:
            assert meta["pos_resize"] == "size", meta["pos_resize"]
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    prefix = prefix + F.pad(pos[:p_rows], (0, 0, 0, x_count - p_rows))[:, None, :]
    src = torch.cat((prefix, seq + grid.reshape(1, e, h * w).permute(2, 0, 1)), dim=0)  # (X + S, 1, E)

    # 5: the encoder with its final norm; the last layer's attention weights beside it
    x = src
    for layer_i in encoder.layers[:-1]:
        x = layer_i(x)
    last = encoder.layers[-1]
    y = last.norm1(x)
    _, attention = last.self_attn(y, y, y, need_weights=True, average_attn_weights=False)
    memory = encoder(src)

    # 7, 8: outputs
    out = {"cls": memory[0, 0], "features": memory[x_count:, 0].transpose(0, 1).reshape(e, h, w),
           "attention": attention[0]}
    if int(meta["num_classes"]) > 0:
        assert meta["head_pool"] == "cls"
        logits = F.linear(memory[0, 0], t["head.weight"], t["head.bias"])
        if meta.get("dist_token") == "true":
            logits = (logits + F.linear(memory[1, 0], t["head_dist.weight"], t["head_dist.bias"])) / 2
        out["logits"] = logits
    return out


# =============================================================================================
# Weights

def seeded(name: str) -> np.random.RandomState:
    seed = zlib.crc32(name.encode())
    torch.manual_seed(seed)
    return np.random.RandomState(seed)


def randomize(model: nn.Module) -> None:
    """Re-draws every parameter: matrices xavier, biases N(0, 0.3), LayerNorm weights N(1, 0.3), LayerScale
    U(0.2, 1.5), tokens and position embeddings N(0, 0.5); query and key projections then times ATTENTION_GAIN
    so that the attention maps are peaked, not nearly uniform."""
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                if isinstance(module, nn.LayerNorm) and name == "weight":
                    param.normal_(1.0, 0.3)
                elif name == "gamma":
                    param.uniform_(0.2, 1.5)
                elif "bias" in name:
                    param.normal_(0.0, 0.3)
                elif param.dim() >= 2 and not isinstance(module, (pytorch_vits.TimmViT, pytorch_vits.HFEmbeddings)) \
                        and name not in ("class_token", "pos_embedding"):
                    nn.init.xavier_uniform_(param)
                else:  # cls / dist / register / mask tokens, pos_embed, torchvision class_token / pos_embedding
                    param.normal_(0.0, 0.5)
        for name, param in model.named_parameters():  # sharper attention than xavier's near-uniform one
            if name.endswith(("in_proj_weight", "qkv.weight", "query.weight", "key.weight")):
                param.mul_(ATTENTION_GAIN)


# =============================================================================================
# Cases

def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().numpy().astype(np.float32))


def write_case(name: str, family: str, description: str, module: nn.Module, run: Callable[[torch.Tensor], Dict],
               import_flags: Sequence[str], preprocessing: Dict[str, object], images: Sequence[str] = IMAGES,
               full_attention: bool = False) -> None:
    folder = FIXTURES / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    reference_mode(module)
    model_path = folder / "model.safetensors"
    with tempfile.TemporaryDirectory() as tmp:  # the user's step: torch.save(model.state_dict()), then import
        checkpoint = Path(tmp) / "checkpoint.pth"
        torch.save(module.state_dict(), checkpoint)
        command = [sys.executable, str(IMPORTER), str(checkpoint), "--family", family, "--out", str(model_path),
                   *import_flags]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, f"{name}: import_model.py failed: {done.stderr.strip()}"
    _, meta = read_safetensors(str(model_path))
    assert meta["resize_mode"] == preprocessing["resize_mode"] and meta["interpolation"] == preprocessing["interpolation"]
    case = {"family": family, "description": description, "tolerance": TOLERANCE, "model": "model.safetensors",
            "size": int(meta["image_size"]), "resize_mode": meta["resize_mode"],
            "resize_size": int(meta["resize_size"]) if "resize_size" in meta else None,
            "interpolation": meta["interpolation"], "images": list(images), "grid": {}, "expected": {},
            "attention_module": f"encoder.layers.{int(meta['num_encoder_layers']) - 1}.self_attn"}
    assert case["size"] == preprocessing["size"], f"{name}: image_size {case['size']}"

    worst = 0.0
    for image in images:
        pixels = model_pixels(image, case, meta)
        original = run(pixels)                                   # the original PyTorch module, image alone
        spec = prefix_reference(str(model_path), pixels)         # the file, through the spec's definition
        assert original.keys() == spec.keys(), f"{name}: {sorted(original)} vs {sorted(spec)}"
        for key in original:
            assert original[key].shape == spec[key].shape, f"{name} {image} {key}: {original[key].shape} vs {spec[key].shape}"
            worst = max(worst, float((original[key] - spec[key]).abs().max()))
        stem = Path(image).stem
        files = {}
        outputs = {"cls": original["cls"], "features": original["features"],
                   "attention_cls": original["attention"][:, 0, :]}
        if "logits" in original:
            outputs["logits"] = original["logits"]
        if full_attention:
            outputs["attention"] = original["attention"]
        for key, tensor in outputs.items():
            array = to_numpy(tensor)
            assert np.isfinite(array).all(), f"{name}: non-finite {key}"
            np.save(folder / f"{stem}.{key}.npy", array)
            files[key] = f"{stem}.{key}.npy"
        case["expected"][image] = files
        case["grid"][image] = list(original["features"].shape[1:])
    assert worst <= MAPPING_TOLERANCE, f"{name}: the imported file differs from the original by {worst:.3e}"
    (folder / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    total = sum(f.stat().st_size for f in folder.iterdir())
    grids = ", ".join(f"{Path(i).stem} {g[0]}x{g[1]}" for i, g in case["grid"].items())
    print(f"{name:34s} {total / 1024:6.1f} KB  worst |original - spec(file)| = {worst:.2e}  grids: {grids}")
    assert total < MAX_FOLDER, f"{name}: case folder is {total} bytes"


def timm_run(module):
    return lambda pixels: module.outputs(pixels)


def case_torchvision_p16() -> None:
    import torchvision
    name = "torchvision_p16_224"
    seeded(name)
    model = torchvision.models.VisionTransformer(image_size=224, patch_size=16, num_layers=2, num_heads=3,
                                                 hidden_dim=24, mlp_dim=48, num_classes=5)
    randomize(model)
    write_case(name, "torchvision-vit", "torchvision.models.VisionTransformer (the class itself) p16 at 224, "
               "E=24, 3 heads, 2 layers, MLP 48, head K=5 (heads.head); shorter-crop: Resize(256) then "
               "CenterCrop(224), grid 14x14 = the trained grid (no position resize)",
               model, lambda px: pytorch_vits.torchvision_outputs(model, px), ["--nhead", "3"],
               dict(size=224, resize_mode="shorter-crop", interpolation="area-linear"))


def case_torchvision_p8() -> None:
    import torchvision
    name = "torchvision_p8_48_attention"
    seeded(name)
    model = torchvision.models.VisionTransformer(image_size=48, patch_size=8, num_layers=3, num_heads=2,
                                                 hidden_dim=32, mlp_dim=64, num_classes=3)
    randomize(model)
    write_case(name, "torchvision-vit", "torchvision VisionTransformer p8 at image_size 48 (grid 6x6), E=32, "
               "2 heads, 3 layers, head K=3 with class names from a file; shorter-crop with resize_size 56, "
               "linear interpolation; the whole last-block attention (2, 37, 37) is expected too",
               model, lambda px: pytorch_vits.torchvision_outputs(model, px),
               ["--nhead", "2", "--resize-size", "56", "--interpolation", "linear", "--class-names", str(CLASS_FILE)],
               dict(size=48, resize_mode="shorter-crop", interpolation="linear"), full_attention=True)


def case_deit_distilled() -> None:
    name = "timm_deit_distilled_224"
    seeded(name)
    model = pytorch_vits.TimmViT(img_size=224, patch_size=16, embed_dim=24, depth=2, num_heads=3, mlp_hidden=48,
                                 num_classes=4, distilled=True)
    randomize(model)
    write_case(name, "timm-vit", "timm DeiT distilled (VisionTransformerDistilled): cls_token + dist_token, "
               "pos_embed (1, 2 + 196, E), head and head_dist (logits = (head(cls) + head_dist(dist)) / 2), p16 "
               "at 224, E=24, 3 heads, 2 blocks; shorter-crop 256 -> 224, grid 14x14 (no position resize)",
               model, timm_run(model), ["--nhead", "3"],
               dict(size=224, resize_mode="shorter-crop", interpolation="area-linear"))


def case_timm_registers() -> None:
    name = "timm_no_embed_class_registers"
    seeded(name)
    model = pytorch_vits.TimmViT(img_size=128, patch_size=16, embed_dim=32, depth=2, num_heads=2, mlp_hidden=64,
                                 num_classes=6, reg_tokens=3, no_embed_class=True, init_values=1e-5)
    randomize(model)
    write_case(name, "timm-vit", "timm VisionTransformer with no_embed_class (DeiT-3 style: pos_embed (1, 64, E) "
               "for the patches only, pos_embed_prefix 0) and 3 reg_token registers, LayerScale ls1/ls2 (folded "
               "into out_proj and linear2), p16 at 128, E=32, 2 heads, 2 blocks, head K=6; shorter-crop "
               "146 -> 128 with cubic interpolation, grid 8x8 (no position resize)",
               model, timm_run(model), ["--nhead", "2", "--interpolation", "cubic"],
               dict(size=128, resize_mode="shorter-crop", interpolation="cubic"))


def case_dino_v1() -> None:
    name = "dino_v1_p8_patch_crop"
    seeded(name)
    model = pytorch_vits.TimmViT(img_size=80, patch_size=8, embed_dim=24, depth=2, num_heads=3, mlp_hidden=48,
                                 num_classes=0, pos_resize="dino")
    randomize(model)
    write_case(name, "timm-vit", "DINO v1 ViT (facebookresearch/dino vision_transformer.py: no head) p8 trained "
               "at 80 (pos grid 10x10), run at longer side 96 with patch-crop: non-square grids 8x12 and a "
               "square 12x12, positions resized by DINO's rule (scale_factor (h + 0.1) / 10), E=24, 3 heads, "
               "2 blocks, cubic interpolation",
               model, timm_run(model), ["--nhead", "3", "--pos-resize", "dino", "--image-size", "96",
                                        "--resize-mode", "patch-crop", "--interpolation", "cubic"],
               dict(size=96, resize_mode="patch-crop", interpolation="cubic"))


def case_dinov2_registers() -> None:
    name = "dinov2_p14_registers_layerscale"
    seeded(name)
    model = pytorch_vits.TimmViT(img_size=168, patch_size=14, embed_dim=24, depth=3, num_heads=2, mlp_hidden=48,
                                 num_classes=0, reg_tokens=4, register_naming="dinov2", init_values=1.0,
                                 pos_resize="dino", mask_token=True)
    randomize(model)
    write_case(name, "timm-vit", "DINOv2 DinoVisionTransformer (interpolate_offset 0.1) p14 with 4 register_tokens "
               "(inserted after the CLS token after positions: pos_embed (1, 1 + 144, E), pos_embed_prefix 1), "
               "LayerScale, mask_token (dropped by the importer); trained grid 12x12 at 168, run with "
               "patch-crop at 168: 8x12 grids (DINO's rule) and a square 12x12 (no resize), E=24, 2 heads, "
               "3 blocks",
               model, timm_run(model), ["--nhead", "2", "--pos-resize", "dino", "--resize-mode", "patch-crop"],
               dict(size=168, resize_mode="patch-crop", interpolation="area-linear"))


def case_hf_classification() -> None:
    name = "hf_vit_classification_224"
    seeded(name)
    model = pytorch_vits.HFViTForImageClassification(num_labels=5, image_size=224, patch_size=16, hidden_size=24,
                                                     num_hidden_layers=2, num_attention_heads=3,
                                                     intermediate_size=48)
    randomize(model)
    write_case(name, "hf-vit", "Hugging Face ViTForImageClassification (vit.* + classifier, separate query/key/"
               "value concatenated into in_proj), layer_norm_eps 1e-12, mean/std 0.5, p16 at 224 with "
               "stretch (ViTImageProcessor's 224x224), E=24, 3 heads, 2 layers, K=5",
               model, lambda px: model.outputs(px), ["--nhead", "3"],
               dict(size=224, resize_mode="stretch", interpolation="area-linear"))


def case_hf_interpolate() -> None:
    name = "hf_vit_model_interpolate"
    seeded(name)
    model = pytorch_vits.HFViTModel(image_size=96, patch_size=16, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, add_pooling_layer=True,
                                    use_mask_token=True)
    randomize(model)
    write_case(name, "hf-vit", "Hugging Face ViTModel (no head; pooler.dense and embeddings.mask_token dropped "
               "by the importer) trained at 96 (grid 6x6), run with interpolate_pos_encoding=True at longer "
               "side 160 with patch-crop: 6x10 grids and a square 10x10, positions by the size rule "
               "(F.interpolate(size=(h, w)), bicubic), E=32, 2 heads, 2 layers",
               model, lambda px: model.outputs(px, interpolate_pos_encoding=True),
               ["--nhead", "2", "--image-size", "160", "--resize-mode", "patch-crop"],
               dict(size=160, resize_mode="patch-crop", interpolation="area-linear"))


def case_timm_dynamic_img_size() -> None:
    name = "timm_dynamic_img_size_antialias"
    seeded(name)
    model = pytorch_vits.TimmViT(img_size=128, patch_size=16, embed_dim=24, depth=2, num_heads=3, mlp_hidden=48,
                                 num_classes=5, pos_resize="size-antialias")
    randomize(model)
    write_case(name, "timm-vit", "timm VisionTransformer with dynamic_img_size=True (resample_abs_pos_embed: "
               "F.interpolate(size=(h, w), bicubic, antialias=True)) p16 trained at 128 (pos grid 8x8), imported "
               "with --pos-resize size-antialias, run at longer side 160 with patch-crop: 6x10 grids (rows shrunk, "
               "columns enlarged) and a square 10x10, E=24, 3 heads, 2 blocks, head K=5",
               model, timm_run(model), ["--nhead", "3", "--pos-resize", "size-antialias", "--image-size", "160",
                                        "--resize-mode", "patch-crop"],
               dict(size=160, resize_mode="patch-crop", interpolation="area-linear"))


def case_dinov2_hub_registers() -> None:
    name = "dinov2_hub_reg_antialias"
    seeded(name)
    model = pytorch_vits.TimmViT(img_size=168, patch_size=14, embed_dim=24, depth=2, num_heads=2, mlp_hidden=48,
                                 num_classes=0, reg_tokens=4, register_naming="dinov2", init_values=1.0,
                                 pos_resize="size-antialias", mask_token=True)
    randomize(model)
    write_case(name, "timm-vit", "DINOv2 as the torch.hub dinov2_vit*14_reg models build it (interpolate_offset 0, "
               "interpolate_antialias True: F.interpolate(size=(h, w), bicubic, antialias=True)) p14 with 4 "
               "register_tokens (no positions), LayerScale, mask_token (dropped); trained grid 12x12 at 168, "
               "imported with --pos-resize size-antialias, run at longer side 140 with patch-crop: every grid "
               "smaller than the trained one, 6x10 and a square 10x10, E=24, 2 heads, 2 blocks",
               model, timm_run(model), ["--nhead", "2", "--pos-resize", "size-antialias", "--image-size", "140",
                                        "--resize-mode", "patch-crop"],
               dict(size=140, resize_mode="patch-crop", interpolation="area-linear"))


CASES = {f.__name__[len("case_"):]: f for f in (case_torchvision_p16, case_torchvision_p8, case_deit_distilled,
                                                 case_timm_registers, case_dino_v1, case_dinov2_registers,
                                                 case_hf_classification, case_hf_interpolate,
                                                 case_timm_dynamic_img_size, case_dinov2_hub_registers)}
CLASS_FILE = FIXTURES / "class_names_3.txt"


def main(argv: Sequence[str]) -> int:
    torch.set_num_threads(1)
    unknown = [c for c in argv if c not in CASES]
    if unknown:
        sys.stderr.write(f"make_vit_goldens.py: unknown case {unknown[0]}; cases: {', '.join(CASES)}\n")
        return 2
    FIXTURES.mkdir(parents=True, exist_ok=True)
    CLASS_FILE.write_text("tabby\nastronaut\ncoffee mug\n")
    for key in argv or CASES:
        CASES[key]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
