#!/usr/bin/env python3
"""Imports a PyTorch-trained CLS-token vision transformer, or a DETR, checkpoint into one vitscope model file.

Usage (Debian's python3-torch only imports from the system interpreter):
    /usr/bin/python3 tools/import_model.py CHECKPOINT --family torchvision-vit|timm-vit|hf-vit|detr
        --out MODEL.safetensors
        [--num-classes K] [--class-names FILE] [--image-size S] [--mean M,M,M] [--std S,S,S] [--nhead N]
        [--layer-norm-eps E] [--pos-resize size|dino|size-antialias] [--pos-grid GH,GW]
        [--resize-mode shorter-crop|stretch|patch-crop|longer|shorter-max] [--resize-size R] [--max-size M]
        [--interpolation area-linear|linear|cubic] [--dilation]

--family detr reads facebookresearch/detr's state_dict names (backbone.0.body.*, input_proj, transformer.*,
query_embed, class_embed, bbox_embed.layers.N; a checkpoint wrapped in "model", as DETR saves them, or
not): tools/import_detr.py says what it infers and what its flags (--nhead, --dilation) default to.
The rest of this page is about the ViT families.

CHECKPOINT is a state_dict saved with torch.save (or a dict holding it under "model", "state_dict" or
"teacher"; a "module." prefix is stripped; a DINO training checkpoint's "backbone." part is kept and its
projection head dropped), or a safetensors file with the original model's tensor names (F32, F16 or BF16
tensors; F16 and BF16 are widened to float32 exactly, as torch.save'd half / bfloat16 tensors are).

Families and the tensor names they read (everything else is an error naming the tensor):
  torchvision-vit  torchvision.models.VisionTransformer: conv_proj, class_token, encoder.pos_embedding,
                   encoder.layers.encoder_layer_N.{ln_1, self_attention, ln_2, mlp.0, mlp.3}, encoder.ln,
                   heads.head (heads.pre_logits, a representation layer, is refused)
  timm-vit         timm's VisionTransformer and DeiT / DINO / DINOv2: patch_embed.proj, cls_token,
                   dist_token, reg_token / register_tokens, pos_embed, blocks.N.{norm1, attn.qkv, attn.proj,
                   ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma} (DINOv2's chunked blocks.C.N. too), norm,
                   head, head_dist; mask_token is dropped (fc_norm, timm's global_pool "avg", is refused)
  hf-vit           Hugging Face ViTModel / ViTForImageClassification ("vit." prefix):
                   embeddings.{cls_token, position_embeddings, patch_embeddings.projection},
                   encoder.layer.N.{attention.attention.{query,key,value}, attention.output.dense,
                   intermediate.dense, output.dense, layernorm_before, layernorm_after}, layernorm,
                   classifier; embeddings.mask_token and pooler.dense are dropped

Sizes the shapes determine are inferred: width E, depth, patch size, MLP width, the prefix tokens (CLS,
distillation, registers), pos_embed_prefix (the rows of pos_embed beyond the largest square grid, or
beyond --pos-grid), the pos grid and the classes. The rest has a flag with the family's usual default:
nhead E/64, eps 1e-6 (hf 1e-12), image size = pos grid * patch, mean/std ImageNet (hf 0.5), pos_resize
size (Hugging Face's rule; DINO v1 and DinoVisionTransformer's default interpolate_offset 0.1, as the torch.hub
dinov2_vit*14 models: --pos-resize dino; DINOv2's torch.hub *_reg models, interpolate_offset 0 with
interpolate_antialias, and timm models with dynamic_img_size, resample_abs_pos_embed: --pos-resize
size-antialias), resize_mode shorter-crop (hf stretch), resize_size
floor(S / 0.875) (256 for 224: torchvision's and DeiT's Resize(256), CenterCrop(224)), interpolation
area-linear (OpenCV has no antialiased bilinear/bicubic; INTER_AREA when shrinking is the nearest to
PIL's). The file follows docs/image_model.md ("Prefix tokens"), written with the conventions of
tools/reference_model.py's export_image_model; LayerScale (ls1.gamma, ls2.gamma) is folded into
out_proj and linear2, Hugging Face's query/key/value are concatenated into in_proj.

Exit status: 0 written, 1 the checkpoint cannot be imported (one line naming the tensor), 2 usage.
"""

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_detr import DetrImportError, build_detr_file  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

FAMILIES = ("torchvision-vit", "timm-vit", "hf-vit", "detr")
POS_RESIZE = ("size", "dino", "size-antialias")
RESIZE_MODES = ("shorter-crop", "stretch", "patch-crop", "longer", "shorter-max")
INTERPOLATIONS = ("area-linear", "linear", "cubic")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULTS = {  # what the family's own code or usual preprocessing does
    "torchvision-vit": dict(eps=1e-6, mean=IMAGENET_MEAN, std=IMAGENET_STD, pos_resize="size",
                            resize_mode="shorter-crop"),
    "timm-vit": dict(eps=1e-6, mean=IMAGENET_MEAN, std=IMAGENET_STD, pos_resize="size", resize_mode="shorter-crop"),
    "hf-vit": dict(eps=1e-12, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), pos_resize="size", resize_mode="stretch"),
}


class ImportModelError(Exception):
    """A checkpoint that cannot become a vitscope file; the message names the tensor."""


# =============================================================================================
# Reading checkpoints

def _to_array(name: str, value) -> np.ndarray:
    import torch
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise ImportModelError(f"{name}: a {value.dtype} tensor, expected floating point weights")
        return value.detach().to(torch.float32).cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.astype(np.float32)
    raise ImportModelError(f"{name}: a {type(value).__name__}, not a tensor (is this a state_dict?)")


def load_checkpoint(path: str, family: str) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """Returns ({original tensor name: float32 array}, notes) from a torch.save'd state_dict or safetensors file."""
    notes: List[str] = []
    with open(path, "rb") as f:
        head = f.read(16)
    if path.endswith(".safetensors") or (len(head) > 9 and head[8:9] == b"{"):
        tensors, _ = read_safetensors(path)
        state = {name: np.array(array, dtype=np.float32) for name, array in tensors.items()}
    else:
        import torch
        try:
            loaded = torch.load(path, map_location="cpu")
        except Exception as error:  # pickle, zip or torch errors: one line
            raise ImportModelError(f"cannot read as a torch.save file: {error}") from None
        if not isinstance(loaded, dict):
            raise ImportModelError(f"holds a {type(loaded).__name__}, expected a state_dict "
                                   "(save model.state_dict(), not the model)")
        for wrapper in ("model", "state_dict", "teacher"):
            if isinstance(loaded.get(wrapper), dict):
                notes.append(f"using the state_dict under {wrapper!r}")
                loaded = loaded[wrapper]
                break
        counters = [str(name) for name in loaded if str(name).endswith(".num_batches_tracked")]
        if counters:
            notes.append(f"dropped {len(counters)} BatchNorm num_batches_tracked counters (unused at inference)")
        state = {str(name): _to_array(str(name), value) for name, value in loaded.items()
                 if str(name) not in counters}
    if state and all(name.startswith("module.") for name in state):
        state = {name[len("module."):]: array for name, array in state.items()}
    if family != "detr" and any(name.startswith("backbone.") for name in state):  # DINO training checkpoints: backbone + DINOHead
        dropped = sorted(name for name in state if not name.startswith("backbone."))
        if dropped:
            notes.append(f"dropped {len(dropped)} tensors outside backbone.* (e.g. {dropped[0]}: the "
                         "self-supervised projection head)")
        state = {name[len("backbone."):]: array for name, array in state.items() if name.startswith("backbone.")}
    if not state:
        raise ImportModelError("no tensors")
    return state, notes


class Tensors:
    """The checkpoint's tensors; take() consumes them so that any left over can be named as unknown."""

    def __init__(self, state: Dict[str, np.ndarray]):
        self.left = dict(state)

    def take(self, name: str, shape: Optional[Sequence[Optional[int]]] = None, optional: bool = False):
        if name not in self.left:
            if optional:
                return None
            raise ImportModelError(f"{name}: missing from the checkpoint")
        array = self.left.pop(name)
        if shape is not None and (array.ndim != len(shape) or any(
                want is not None and got != want for got, want in zip(array.shape, shape))):
            want = "x".join("?" if d is None else str(d) for d in shape)
            raise ImportModelError(f"{name}: shape {list(array.shape)}, expected {want}")
        return array

    def drop(self, name: str, notes: List[str], why: str) -> None:
        if name in self.left:
            del self.left[name]
            notes.append(f"dropped {name} ({why})")

    def refuse(self, prefix: str, why: str) -> None:
        for name in sorted(self.left):
            if name == prefix or name.startswith(prefix + "."):
                raise ImportModelError(f"{name}: {why}")

    def finish(self) -> None:
        if self.left:
            names = sorted(self.left)
            more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
            raise ImportModelError(f"{names[0]}: unknown tensor{more}; this importer does not know what it does")


def _layer_indices(names, pattern: str, what: str) -> int:
    indices = sorted({int(m.group(1)) for m in (re.match(pattern, n) for n in names) if m})
    if not indices:
        raise ImportModelError(f"no {what} tensors found: is --family right?")
    if indices != list(range(len(indices))):
        missing = sorted(set(range(indices[-1] + 1)) - set(indices))
        raise ImportModelError(f"{what} {missing[0]} is missing (found {indices})")
    return len(indices)


# =============================================================================================
# One canonical ViT, whatever the family: the pieces docs/image_model.md's file holds

def _layer(norm1, attn_in, attn_out, norm2, fc1, fc2, ls1=None, ls2=None) -> Dict[str, np.ndarray]:
    """nn.TransformerEncoderLayer tensors; LayerScale folded: ls * (W x + b) = (ls[:, None] W) x + ls b."""
    (out_w, out_b), (fc2_w, fc2_b) = attn_out, fc2
    if ls1 is not None:
        out_w, out_b = out_w * ls1[:, None], out_b * ls1
    if ls2 is not None:
        fc2_w, fc2_b = fc2_w * ls2[:, None], fc2_b * ls2
    return {"self_attn.in_proj_weight": attn_in[0], "self_attn.in_proj_bias": attn_in[1],
            "self_attn.out_proj.weight": out_w, "self_attn.out_proj.bias": out_b,
            "linear1.weight": fc1[0], "linear1.bias": fc1[1], "linear2.weight": fc2_w, "linear2.bias": fc2_b,
            "norm1.weight": norm1[0], "norm1.bias": norm1[1], "norm2.weight": norm2[0], "norm2.bias": norm2[1]}


def _linear(t: Tensors, prefix: str, out_dim: Optional[int], in_dim: Optional[int], bias_optional=False):
    weight = t.take(f"{prefix}.weight", (out_dim, in_dim))
    bias = t.take(f"{prefix}.bias", (weight.shape[0],), optional=bias_optional)
    return weight, bias if bias is not None else np.zeros(weight.shape[0], np.float32)


def _norm(t: Tensors, prefix: str, dim: int):
    return t.take(f"{prefix}.weight", (dim,)), t.take(f"{prefix}.bias", (dim,))


def _patch(t: Tensors, prefix: str):
    weight = t.take(f"{prefix}.weight", (None, None, None, None))
    e, c, ph, pw = weight.shape
    if ph != pw:
        raise ImportModelError(f"{prefix}.weight: a {ph}x{pw} patch; only square patches are supported")
    if c != 3:
        raise ImportModelError(f"{prefix}.weight: {c} input channels, vitscope reads RGB (3)")
    return weight, t.take(f"{prefix}.bias", (e,))


def read_torchvision(t: Tensors, notes: List[str]) -> Dict[str, object]:
    t.refuse("heads.pre_logits", "torchvision's representation layer (pre_logits + tanh) is not supported")
    t.refuse("conv_proj.conv_last", "torchvision's convolutional stem (conv_stem_configs) is not supported")
    patch = _patch(t, "conv_proj")
    e = patch[0].shape[0]
    depth = _layer_indices(t.left, r"encoder\.layers\.encoder_layer_(\d+)\.", "encoder layer")
    layers = []
    for i in range(depth):
        p = f"encoder.layers.encoder_layer_{i}"
        mlp = [f"{p}.mlp.0", f"{p}.mlp.3"]
        if f"{p}.mlp.linear_1.weight" in t.left:  # torchvision < 0.13 MLPBlock names
            mlp = [f"{p}.mlp.linear_1", f"{p}.mlp.linear_2"]
        fc1 = _linear(t, mlp[0], None, e)
        layers.append(_layer(_norm(t, f"{p}.ln_1", e),
                             (t.take(f"{p}.self_attention.in_proj_weight", (3 * e, e)),
                              t.take(f"{p}.self_attention.in_proj_bias", (3 * e,))),
                             _linear(t, f"{p}.self_attention.out_proj", e, e),
                             _norm(t, f"{p}.ln_2", e), fc1, _linear(t, mlp[1], e, fc1[0].shape[0])))
    head = _linear(t, "heads.head", None, e) if "heads.head.weight" in t.left else None
    return {"patch": patch, "cls": t.take("class_token", (1, 1, e)), "pos": t.take("encoder.pos_embedding", (1, None, e)),
            "layers": layers, "norm": _norm(t, "encoder.ln", e), "head": head}


def read_timm(t: Tensors, notes: List[str]) -> Dict[str, object]:
    t.refuse("fc_norm", "timm's fc_norm means global_pool 'avg' (mean of the patch tokens); vitscope "
                        "supports CLS-token pooling only")
    t.refuse("norm_pre", "timm's norm_pre (pre_norm=True, as CLIP) is not supported")
    # DINOv2 with block_chunks > 0 stores blocks.<chunk>.<index>.*: the index is global
    for name in [n for n in t.left if re.match(r"blocks\.\d+\.\d+\.", n)]:
        t.left[re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", name)] = t.left.pop(name)
    patch = _patch(t, "patch_embed.proj")
    e = patch[0].shape[0]
    looks_dinov2 = "mask_token" in t.left or "register_tokens" in t.left
    t.drop("mask_token", notes, "DINOv2 / iBOT's masked-token embedding, used only in training")
    depth = _layer_indices(t.left, r"blocks\.(\d+)\.", "block")
    layers = []
    for i in range(depth):
        p = f"blocks.{i}"
        fc1 = _linear(t, f"{p}.mlp.fc1", None, e)
        layers.append(_layer(_norm(t, f"{p}.norm1", e), _linear(t, f"{p}.attn.qkv", 3 * e, e, bias_optional=True),
                             _linear(t, f"{p}.attn.proj", e, e), _norm(t, f"{p}.norm2", e), fc1,
                             _linear(t, f"{p}.mlp.fc2", e, fc1[0].shape[0]),
                             t.take(f"{p}.ls1.gamma", (e,), optional=True),
                             t.take(f"{p}.ls2.gamma", (e,), optional=True)))
    reg = t.take("reg_token", (1, None, e), optional=True)
    dinov2_reg = t.take("register_tokens", (1, None, e), optional=True)
    if reg is not None and dinov2_reg is not None:
        raise ImportModelError("register_tokens: the checkpoint also has reg_token; one kind of registers only")
    cls = t.take("cls_token", (1, 1, e), optional=True)
    if cls is None:
        raise ImportModelError("cls_token: missing; models without a CLS token (class_token=False) are not supported")
    head = _linear(t, "head", None, e) if "head.weight" in t.left else None
    head_dist = _linear(t, "head_dist", None, e) if "head_dist.weight" in t.left else None
    return {"patch": patch, "cls": cls, "dist": t.take("dist_token", (1, 1, e), optional=True),
            "reg": reg if reg is not None else dinov2_reg, "dinov2_registers": dinov2_reg is not None,
            "looks_dinov2": looks_dinov2,
            "pos": t.take("pos_embed", (1, None, e)), "layers": layers, "norm": _norm(t, "norm", e),
            "head": head, "head_dist": head_dist}


def read_hf(t: Tensors, notes: List[str]) -> Dict[str, object]:
    if any(n.startswith("vit.") for n in t.left):  # ViTForImageClassification: vit.* + classifier.*
        for name in [n for n in t.left if n.startswith("vit.")]:
            t.left[name[len("vit."):]] = t.left.pop(name)
    for name in ("pooler.dense.weight", "pooler.dense.bias"):
        t.drop(name, notes, "ViTModel's pooler (dense + tanh on the CLS output) is not part of the features")
    t.drop("embeddings.mask_token", notes, "the masked-image-modeling token, used only in training")
    patch = _patch(t, "embeddings.patch_embeddings.projection")
    e = patch[0].shape[0]
    depth = _layer_indices(t.left, r"encoder\.layer\.(\d+)\.", "encoder layer")
    layers = []
    for i in range(depth):
        p = f"encoder.layer.{i}"
        q, k, v = (_linear(t, f"{p}.attention.attention.{n}", e, e, bias_optional=True)  # qkv_bias=False
                   for n in ("query", "key", "value"))
        fc1 = _linear(t, f"{p}.intermediate.dense", None, e)
        layers.append(_layer(_norm(t, f"{p}.layernorm_before", e),
                             (np.concatenate([q[0], k[0], v[0]]), np.concatenate([q[1], k[1], v[1]])),
                             _linear(t, f"{p}.attention.output.dense", e, e), _norm(t, f"{p}.layernorm_after", e),
                             fc1, _linear(t, f"{p}.output.dense", e, fc1[0].shape[0])))
    head = _linear(t, "classifier", None, e) if "classifier.weight" in t.left else None
    return {"patch": patch, "cls": t.take("embeddings.cls_token", (1, 1, e)),
            "pos": t.take("embeddings.position_embeddings", (1, None, e)), "layers": layers,
            "norm": _norm(t, "layernorm", e), "head": head}


READERS = {"torchvision-vit": read_torchvision, "timm-vit": read_timm, "hf-vit": read_hf}


# =============================================================================================
# Writing the vitscope file

def _floats(values: Sequence[float]) -> str:
    return ",".join(repr(float(v)) for v in values)  # as export_image_model writes mean and std


def pos_layout(rows: int, prefix_tokens: int, pos_grid: Optional[Tuple[int, int]]) -> Tuple[int, Tuple[int, int]]:
    """(pos_embed_prefix P, (gh, gw)) for a sequence-layout pos_embed of `rows` rows."""
    if pos_grid is None:
        g = math.isqrt(rows)
        while g > 0 and rows - g * g > prefix_tokens:  # never more rows than prefix tokens
            g -= 1
        pos_grid = (g, g)
    gh, gw = pos_grid
    prefix = rows - gh * gw
    if gh < 1 or gw < 1 or not 0 <= prefix <= prefix_tokens:
        raise ImportModelError(f"pos_embed: {rows} rows do not hold a {gh}x{gw} grid after at most "
                               f"{prefix_tokens} prefix rows (the model has {prefix_tokens} prefix tokens)")
    return prefix, (gh, gw)


def build_model_file(model: Dict[str, object], family: str, options: argparse.Namespace,
                     notes: List[str]) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """The tensors and metadata of the vitscope file for a canonical model read by READERS."""
    defaults = DEFAULTS[family]
    patch_w, patch_b = model["patch"]
    e, _, p, _ = patch_w.shape
    layers: List[Dict[str, np.ndarray]] = model["layers"]
    ffn = layers[0]["linear1.weight"].shape[0]
    for i, layer in enumerate(layers):
        if layer["linear1.weight"].shape[0] != ffn:
            raise ImportModelError(f"layer {i}: MLP width {layer['linear1.weight'].shape[0]} differs from layer 0's "
                                   f"{ffn}; vitscope files describe all layers with one width")

    nhead = options.nhead if options.nhead is not None else max(1, e // 64)
    if nhead < 1 or e % nhead != 0:
        raise ImportModelError(f"--nhead {nhead} does not divide the width {e} (give --nhead)")

    dist, reg = model.get("dist"), model.get("reg")
    num_reg = 0 if reg is None else reg.shape[1]
    prefix_tokens = 1 + int(dist is not None) + num_reg
    pos = model["pos"]
    pos_prefix, (gh, gw) = pos_layout(pos.shape[1], prefix_tokens, options.pos_grid)
    if model.get("dinov2_registers") and num_reg and pos_prefix != 1:
        raise ImportModelError(f"pos_embed: DINOv2 register_tokens have no position; expected 1 prefix row, "
                               f"found {pos_prefix}")

    head, head_dist = model.get("head"), model.get("head_dist")
    if head is not None and head[0].shape[0] == 0:  # Linear(E, 0): no classes, no head
        head = head_dist = None
        notes.append("the head has 0 classes: written without a head")
    num_classes = 0 if head is None else head[0].shape[0]
    if head_dist is not None:
        if dist is None:
            raise ImportModelError("head_dist.weight: a distillation head without dist_token")
        if head is None or head_dist[0].shape != head[0].shape:
            raise ImportModelError(f"head_dist.weight: shape {list(head_dist[0].shape)} does not match the head's")
    if dist is not None and head is not None and head_dist is None:
        raise ImportModelError("dist_token: a distilled model with a head needs head_dist (DeiT averages both)")
    if options.num_classes is not None and options.num_classes != num_classes:
        raise ImportModelError(f"--num-classes {options.num_classes}, but the checkpoint's head has "
                               f"{num_classes} classes" + ("" if head is not None else " (no head tensor)"))
    names = options.class_names_list
    if names is None:
        names = [f"class {k}" for k in range(num_classes)]
    elif len(names) != num_classes:
        raise ImportModelError(f"--class-names has {len(names)} names for {num_classes} classes")

    if model.get("looks_dinov2") and options.pos_resize is None:
        seen = "register_tokens, as the torch.hub *_reg models have" if model.get("dinov2_registers") else \
            "a mask_token and no register_tokens, as the torch.hub models without _reg have"
        notes.append("mask_token / register_tokens look like DINOv2, whose position resize is not the default "
                     "size rule: give --pos-resize dino for DinoVisionTransformer's default (interpolate_offset "
                     "0.1, no antialias: the torch.hub dinov2_vit*14 models), --pos-resize size-antialias for "
                     "the torch.hub dinov2_vit*14_reg models (interpolate_offset 0, interpolate_antialias True); "
                     f"this checkpoint has {seen}")
    elif family == "timm-vit" and options.pos_resize is None:
        notes.append("pos_resize size (plain bicubic, Hugging Face's rule): timm resizes positions only with "
                     "dynamic_img_size, by resample_abs_pos_embed (bicubic, antialias=True), so a timm model "
                     "with dynamic_img_size needs --pos-resize size-antialias; DINO v1: --pos-resize dino")
    image_size = options.image_size if options.image_size is not None else max(gh, gw) * p
    resize_mode = options.resize_mode or defaults["resize_mode"]
    eps = options.layer_norm_eps if options.layer_norm_eps is not None else defaults["eps"]
    metadata = {  # key for key what export_image_model writes (export_transformer's keys first)
        "architecture": "ImageTransformer", "d_model": str(e), "nhead": str(nhead),
        "num_encoder_layers": str(len(layers)), "num_decoder_layers": "0", "dim_feedforward": str(ffn),
        "activation": "gelu", "layer_norm_eps": repr(float(eps)), "batch_first": "false", "norm_first": "true",
        "encoder_norm": "true", "decoder_norm": "false",
        "in_chans": "3", "patch_size": str(p), "image_size": str(image_size),
        "mean": _floats(options.mean or defaults["mean"]), "std": _floats(options.std or defaults["std"]),
        "position": "learned", "position_mode": "input", "num_classes": str(num_classes)}
    if num_classes > 0:
        metadata["class_names"] = json.dumps(names, separators=(",", ":"))
        metadata["head_pool"] = "cls"
    metadata.update({"cls_token": "true", "dist_token": "true" if dist is not None else "false",
                     "num_register_tokens": str(num_reg), "pos_embed_prefix": str(pos_prefix),
                     "pos_embed_grid": f"{gh},{gw}", "pos_resize": options.pos_resize or defaults["pos_resize"],
                     "resize_mode": resize_mode})
    if resize_mode == "shorter-crop" or options.resize_size is not None:
        metadata["resize_size"] = str(options.resize_size if options.resize_size is not None
                                      else int(math.floor(image_size / 0.875)))
    metadata["interpolation"] = options.interpolation or "area-linear"

    tensors = {"patch_embed.proj.weight": patch_w, "patch_embed.proj.bias": patch_b, "pos_embed": pos,
               "cls_token": model["cls"]}
    if dist is not None:
        tensors["dist_token"] = dist
    if reg is not None:
        tensors["register_tokens"] = reg
    for i, layer in enumerate(layers):
        tensors.update({f"transformer.encoder.layers.{i}.{name}": array for name, array in layer.items()})
    tensors["transformer.encoder.norm.weight"], tensors["transformer.encoder.norm.bias"] = model["norm"]
    if head is not None:
        tensors["head.weight"], tensors["head.bias"] = head
    if head_dist is not None:
        tensors["head_dist.weight"], tensors["head_dist.bias"] = head_dist
    tensors = {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in tensors.items()}
    notes.append(f"E={e} nhead={nhead} depth={len(layers)} mlp={ffn} patch={p} prefix tokens={prefix_tokens} "
                 f"(dist={dist is not None}, registers={num_reg}) pos_embed {pos.shape[1]} rows = {pos_prefix} "
                 f"prefix + {gh}x{gw} classes={num_classes} image_size={image_size}")
    return tensors, metadata


def import_model(checkpoint: str, family: str, out: str, options: argparse.Namespace) -> List[str]:
    """Reads `checkpoint`, writes the vitscope file `out`; returns the notes printed by the command line."""
    state, notes = load_checkpoint(checkpoint, family)
    if family == "detr":
        arrays, metadata = build_detr_file(state, options, notes)
        write_safetensors(out, arrays, metadata)
        return notes
    tensors = Tensors(state)
    model = READERS[family](tensors, notes)
    tensors.finish()
    arrays, metadata = build_model_file(model, family, options, notes)
    write_safetensors(out, arrays, metadata)
    return notes


# =============================================================================================
# Command line

class UsageError(Exception):
    pass


def _floats_arg(text: str) -> Tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not three comma-separated numbers") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 3 values (R,G,B), got {len(values)}")
    return values


def _grid_arg(text: str) -> Tuple[int, int]:
    try:
        gh, gw = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not GH,GW") from None
    if gh < 1 or gw < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the grid must be at least 1x1")
    return gh, gw


def _int_at_least(lowest: int):
    """An argparse type: an integer of at least `lowest`."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"{value} must be at least {lowest}")
        return value
    return parse


_positive = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _eps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


def read_class_names(path: str) -> List[str]:
    """One name per line (blank lines at the end ignored), or a JSON array of strings."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"--class-names {path}: {error.strerror}") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as error:
            raise UsageError(f"--class-names {path}: not a JSON array: {error}") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise UsageError(f"--class-names {path}: the JSON must be an array of strings")
        return names
    return text.rstrip("\n").split("\n") if text.strip() else []


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = _Parser(prog="import_model.py", description="Import a PyTorch ViT checkpoint into a vitscope model file.")
    parser.add_argument("checkpoint", help="torch.save'd state_dict or safetensors file")
    parser.add_argument("--family", required=True, choices=FAMILIES)
    parser.add_argument("--out", required=True, help="the vitscope .safetensors file to write")
    parser.add_argument("--num-classes", type=_non_negative_int, help="check: the head's class count")
    parser.add_argument("--class-names", help="file: one name per line, or a JSON array")
    parser.add_argument("--image-size", type=_positive, help="default: pos grid * patch size (detr: 800)")
    parser.add_argument("--mean", type=_floats_arg, help="R,G,B (default ImageNet's; hf-vit 0.5,0.5,0.5)")
    parser.add_argument("--std", type=_floats_arg, help="R,G,B (default ImageNet's; hf-vit 0.5,0.5,0.5)")
    parser.add_argument("--nhead", type=_positive, help="attention heads (default E/64, at least 1; detr 8)")
    parser.add_argument("--layer-norm-eps", type=_eps, help="default 1e-6 (hf-vit 1e-12, detr 1e-5)")
    parser.add_argument("--pos-resize", choices=POS_RESIZE,
                        help="size (default; Hugging Face), dino (DINO v1, DINOv2 with interpolate_offset 0.1) or "
                             "size-antialias (timm dynamic_img_size, DINOv2 torch.hub *_reg models)")
    parser.add_argument("--pos-grid", type=_grid_arg, help="GH,GW: pos_embed's grid when it is not square")
    parser.add_argument("--resize-mode", choices=RESIZE_MODES,
                        help="default shorter-crop (hf-vit stretch, detr shorter-max)")
    parser.add_argument("--resize-size", type=_positive, help="shorter-crop's shorter side (default floor(S/0.875))")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, help="default area-linear")
    parser.add_argument("--dilation", action="store_true",
                        help="detr: the backbone was built with dilation=True (C5 at stride 16)")
    parser.add_argument("--max-size", type=_positive, help="detr, shorter-max: the longer side's bound (default 1333)")
    args = parser.parse_args(argv)
    try:
        args.class_names_list = read_class_names(args.class_names) if args.class_names else None
    except UsageError as error:
        parser.error(str(error))
    return args


def options(**overrides) -> argparse.Namespace:
    """The command line's options with their defaults, for calling import_model() from Python."""
    args = parse_args(["-", "--family", "timm-vit", "--out", "-"])
    for key in ("checkpoint", "family", "out"):
        delattr(args, key)
    for key, value in overrides.items():
        if not hasattr(args, key):
            raise TypeError(f"unknown option {key!r}")
        setattr(args, key, value)
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if not Path(args.checkpoint).is_file():
        sys.stderr.write(f"import_model.py: error: {args.checkpoint}: no such file\n")
        return 2
    try:
        notes = import_model(args.checkpoint, args.family, args.out, args)
    except (ImportModelError, DetrImportError, ValueError, OSError) as error:
        message = " ".join(str(error).split())  # one line
        if message.startswith(f"{args.checkpoint}: "):  # safetensors_io names the file itself
            message = message[len(args.checkpoint) + 2:]
        sys.stderr.write(f"import_model.py: {args.checkpoint}: {message}\n")
        return 1
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
