"""import_model.py --family detr: a DETR checkpoint (facebookresearch/detr's state_dict names, as
tools/detr_model.py builds them) as one vitscope image model file.

Read, and written under the same names (docs/image_model.md, "Detector"):
  backbone.0.body.*          torchvision's ResNet up to layer4 (conv1, bn1, layerS.N.{conv,bn}K,
                             layerS.N.downsample.{0,1}); load_checkpoint drops bn.num_batches_tracked
  input_proj                 Conv2d(C5, E, 1)
  transformer.encoder.layers.N, transformer.encoder.norm (pre-norm only), transformer.decoder.layers.N,
  transformer.decoder.norm   DETR's transformer: the nn.Transformer layer names
  query_embed.weight         (Q, E)
  class_embed                Linear(E, K+1), the last class "no object"
  bbox_embed.layers.{0,1,2}  MLP(E, E, 4, 3)
From the shapes: the ResNet's block (conv3 present: Bottleneck), blocks per stage, planes and width
per group, E, Q, K, the depths, the MLP width and pre-norm (an encoder norm: DETR adds one only with
pre_norm). Not in the weights, so flags with DETR's defaults: --nhead 8, --dilation (C5 at stride 16
rather than 32), eps 1e-5, shorter side 800 with the longer at most 1333 (resize_mode shorter-max),
ImageNet mean and std.
"""

import argparse
import json
import re
from typing import Dict, List, Tuple

import numpy as np

BODY = "backbone.0.body."
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_PARTS = ("weight", "bias", "running_mean", "running_var")
ENCODER_PARTS = ("self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                 "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
                 "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")
DECODER_PARTS = ENCODER_PARTS + tuple(part.replace("self_attn", "multihead_attn") for part in ENCODER_PARTS[:4]) + (
    "norm3.weight", "norm3.bias")


class DetrImportError(Exception):
    """A checkpoint that is not a DETR vitscope can run; the message names the tensor."""


def _take(state: Dict[str, np.ndarray], name: str, shape: Tuple[int, ...]) -> np.ndarray:
    if name not in state:
        raise DetrImportError(f"{name}: missing from the checkpoint")
    array = state.pop(name)
    if tuple(array.shape) != tuple(shape):
        raise DetrImportError(f"{name}: shape {list(array.shape)}, expected {list(shape)}")
    return array


def _count(names, pattern: str) -> int:
    indices = {int(m.group(1)) for m in (re.fullmatch(pattern, n) for n in names) if m}
    if indices != set(range(len(indices))):
        raise DetrImportError(f"{pattern}: layer numbers {sorted(indices)} are not 0..n-1")
    return len(indices)


def _resnet_shape(state: Dict[str, np.ndarray]) -> Dict[str, object]:
    """The ResNet's constructor arguments, read off its weights' shapes."""
    names = [n for n in state if n.startswith(BODY)]
    if BODY + "conv1.weight" not in state:
        raise DetrImportError(f"{BODY}conv1.weight: missing: not a DETR checkpoint with a ResNet backbone")
    bottleneck = any(re.fullmatch(re.escape(BODY) + r"layer\d\.\d+\.conv3\.weight", n) for n in names)
    layers = [_count(names, re.escape(BODY) + rf"layer{s}\.(\d+)\..*") for s in range(1, 5)]
    if 0 in layers:
        raise DetrImportError(f"{BODY}layer{layers.index(0) + 1}.0.conv1.weight: missing")
    planes, widths = [], []
    for s in range(1, 5):
        first = f"{BODY}layer{s}.0."
        if first + "conv2.weight" not in state or (bottleneck and first + "conv3.weight" not in state):
            raise DetrImportError(f"{first}conv{3 if bottleneck else 2}.weight: missing")
        out = state[first + ("conv3.weight" if bottleneck else "conv2.weight")].shape[0]
        planes.append(out // 4 if bottleneck else out)
        widths.append(state[first + "conv2.weight"].shape[0])
    width_per_group = widths[0] * 64 // planes[0]
    if any(w * 64 != width_per_group * p for w, p in zip(widths, planes)):
        raise DetrImportError(f"{BODY}layer*.0.conv2.weight: inner widths {widths} are not one width_per_group "
                              f"of planes {planes}")
    return {"bottleneck": bottleneck, "layers": layers, "planes": planes, "width_per_group": width_per_group}


def _take_resnet(state: Dict[str, np.ndarray], r: Dict[str, object], out: Dict[str, np.ndarray]) -> int:
    """Moves every backbone tensor into `out`, checking its shape as torchvision builds it; returns C5."""
    def conv_bn(conv: str, bn: str, c_out: int, c_in: int, k: int) -> None:
        out[BODY + conv + ".weight"] = _take(state, BODY + conv + ".weight", (c_out, c_in, k, k))
        for part in BN_PARTS:
            out[f"{BODY}{bn}.{part}"] = _take(state, f"{BODY}{bn}.{part}", (c_out,))

    expansion = 4 if r["bottleneck"] else 1
    conv_bn("conv1", "bn1", 64, 3, 7)
    inplanes = 64
    for s, (blocks, planes) in enumerate(zip(r["layers"], r["planes"]), start=1):
        width = planes * r["width_per_group"] // 64
        for n in range(blocks):
            block = f"layer{s}.{n}."
            if r["bottleneck"]:
                conv_bn(block + "conv1", block + "bn1", width, inplanes, 1)
                conv_bn(block + "conv2", block + "bn2", width, width, 3)
                conv_bn(block + "conv3", block + "bn3", planes * 4, width, 1)
            else:
                conv_bn(block + "conv1", block + "bn1", planes, inplanes, 3)
                conv_bn(block + "conv2", block + "bn2", planes, planes, 3)
            if n == 0 and (s > 1 or inplanes != planes * expansion):
                conv_bn(block + "downsample.0", block + "downsample.1", planes * expansion, inplanes, 1)
            inplanes = planes * expansion
    return inplanes


def _take_layers(state, out, prefix: str, parts, e: int, ffn: int) -> int:
    count = _count(state, re.escape(prefix) + r"(\d+)\..*")
    shapes = {"in_proj_weight": (3 * e, e), "in_proj_bias": (3 * e,), "out_proj.weight": (e, e),
              "out_proj.bias": (e,), "linear1.weight": (ffn, e), "linear1.bias": (ffn,),
              "linear2.weight": (e, ffn), "linear2.bias": (e,)}
    for i in range(count):
        for part in parts:
            shape = shapes.get(part.split("attn.")[-1], (e,))  # self_attn.X and multihead_attn.X as X
            out[f"{prefix}{i}.{part}"] = _take(state, f"{prefix}{i}.{part}", shape)
    return count


def build_detr_file(state: Dict[str, np.ndarray], options: argparse.Namespace,
                    notes: List[str]) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """The tensors and metadata of the vitscope file for a DETR state_dict (consumed from `state`)."""
    state = dict(state)
    resnet = _resnet_shape(state)
    out: Dict[str, np.ndarray] = {}
    c5 = _take_resnet(state, resnet, out)
    if "input_proj.weight" not in state:
        raise DetrImportError("input_proj.weight: missing from the checkpoint")
    e = state["input_proj.weight"].shape[0]
    out["input_proj.weight"] = _take(state, "input_proj.weight", (e, c5, 1, 1))
    out["input_proj.bias"] = _take(state, "input_proj.bias", (e,))
    if e % 4 != 0:
        raise DetrImportError(f"input_proj.weight: hidden_dim {e} is not a multiple of 4, which the sine position needs")
    q = state.get("query_embed.weight", np.zeros((0, 0))).shape[0]
    out["query_embed.weight"] = _take(state, "query_embed.weight", (q, e))
    k1 = state.get("class_embed.weight", np.zeros((0, 0))).shape[0]
    if k1 < 2:
        raise DetrImportError(f"class_embed.weight: {k1} outputs; DETR has K classes and 'no object' (K + 1 >= 2)")
    out["class_embed.weight"] = _take(state, "class_embed.weight", (k1, e))
    out["class_embed.bias"] = _take(state, "class_embed.bias", (k1,))
    for i, (rows, cols) in enumerate(((e, e), (e, e), (4, e))):
        out[f"bbox_embed.layers.{i}.weight"] = _take(state, f"bbox_embed.layers.{i}.weight", (rows, cols))
        out[f"bbox_embed.layers.{i}.bias"] = _take(state, f"bbox_embed.layers.{i}.bias", (rows,))
    ffn_name = "transformer.encoder.layers.0.linear1.weight"
    if ffn_name not in state:
        raise DetrImportError(f"{ffn_name}: missing from the checkpoint")
    ffn = state[ffn_name].shape[0]
    encoders = _take_layers(state, out, "transformer.encoder.layers.", ENCODER_PARTS, e, ffn)
    decoders = _take_layers(state, out, "transformer.decoder.layers.", DECODER_PARTS, e, ffn)
    if decoders == 0:
        raise DetrImportError("transformer.decoder.layers.0.self_attn.in_proj_weight: missing from the checkpoint")
    pre_norm = "transformer.encoder.norm.weight" in state
    norms = ["transformer.decoder.norm"] + (["transformer.encoder.norm"] if pre_norm else [])
    for norm in norms:
        out[norm + ".weight"] = _take(state, norm + ".weight", (e,))
        out[norm + ".bias"] = _take(state, norm + ".bias", (e,))
    if state:
        names = sorted(state)
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        raise DetrImportError(f"{names[0]}: unknown tensor{more}; this importer does not know what it does")

    nhead = options.nhead if options.nhead is not None else 8
    if e % nhead != 0:
        raise DetrImportError(f"--nhead {nhead} does not divide hidden_dim {e} (give --nhead)")
    num_classes = k1 - 1
    names = options.class_names_list
    if names is None:
        names = [f"class {k}" for k in range(num_classes)]
    elif len(names) != num_classes:
        raise DetrImportError(f"--class-names has {len(names)} names; class_embed has {num_classes} classes "
                              "and 'no object'")
    if options.num_classes is not None and options.num_classes != num_classes:
        raise DetrImportError(f"--num-classes {options.num_classes}, but class_embed has {num_classes} classes "
                              "and 'no object'")
    dilation = bool(getattr(options, "dilation", False))
    resize_mode = options.resize_mode or "shorter-max"
    image_size = options.image_size if options.image_size is not None else 800
    eps = options.layer_norm_eps if options.layer_norm_eps is not None else 1e-5
    floats = lambda values: ",".join(repr(float(v)) for v in values)  # noqa: E731
    metadata = {
        "architecture": "ImageTransformer", "d_model": str(e), "nhead": str(nhead),
        "num_encoder_layers": str(encoders), "num_decoder_layers": str(decoders), "dim_feedforward": str(ffn),
        "activation": "relu", "layer_norm_eps": repr(float(eps)), "batch_first": "false",
        "norm_first": "true" if pre_norm else "false", "encoder_norm": "true" if pre_norm else "false",
        "decoder_norm": "true", "in_chans": "3", "patch_size": "16" if dilation else "32",
        "image_size": str(image_size), "mean": floats(options.mean or IMAGENET_MEAN),
        "std": floats(options.std or IMAGENET_STD), "position": "sine", "position_mode": "attention",
        "target": "queries", "num_queries": str(q), "num_classes": str(num_classes),
        "class_names": json.dumps(names, separators=(",", ":")), "resize_mode": resize_mode,
        "interpolation": options.interpolation or "area-linear",
        "backbone": "resnet", "backbone_block": "Bottleneck" if resnet["bottleneck"] else "BasicBlock",
        "backbone_layers": ",".join(map(str, resnet["layers"])),
        "backbone_planes": ",".join(map(str, resnet["planes"])),
        "backbone_width_per_group": str(resnet["width_per_group"]),
        "backbone_dilation": "true" if dilation else "false", "detector": "detr"}
    if resize_mode == "shorter-max":
        metadata["max_size"] = str(options.max_size if options.max_size is not None else 1333)
    if resize_mode == "shorter-crop" or options.resize_size is not None:
        metadata["resize_size"] = str(options.resize_size if options.resize_size is not None
                                      else int(image_size / 0.875))
    notes.append(f"ResNet {'Bottleneck' if resnet['bottleneck'] else 'BasicBlock'} layers={resnet['layers']} "
                 f"planes={resnet['planes']} width_per_group={resnet['width_per_group']} C5={c5} "
                 f"stride={16 if dilation else 32}; E={e} nhead={nhead} encoder={encoders} decoder={decoders} "
                 f"ffn={ffn} {'pre' if pre_norm else 'post'}-norm queries={q} classes={num_classes}")
    return {n: np.ascontiguousarray(a, dtype=np.float32) for n, a in out.items()}, metadata
