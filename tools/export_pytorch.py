#!/usr/bin/env python3
"""Export PyTorch 1.13 torch.nn.Transformer / nn.TransformerEncoder / nn.MultiheadAttention weights as
vitscope model files.

A vitscope model file is a safetensors file whose tensors are exactly the module's state_dict
(float32) and whose "__metadata__" holds the constructor arguments as strings.

Command line (a state_dict saved with torch.save(model.state_dict(), "model.pt"); on Debian run it with
/usr/bin/python3, the interpreter python3-torch installs into):
    export_pytorch.py --state-dict model.pt --d-model 256 --nhead 8 --out model.safetensors

From Python:
    from export_pytorch import export_transformer, export_mha
    export_transformer(model, "model.safetensors")  # an nn.Transformer or a bare nn.TransformerEncoder
"""

import argparse
import pickle
import sys
from collections.abc import Mapping
from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from safetensors_io import write_safetensors


class ExportError(ValueError):
    """The model or state_dict cannot be represented by (or would run differently in) vitscope."""


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _activation_name(activation, where: str) -> str:
    if isinstance(activation, str) and activation in ("relu", "gelu"):
        return activation
    if activation is F.relu or activation is torch.relu or isinstance(activation, nn.ReLU):
        return "relu"
    # Only the exact (erf) GELU; the tanh approximation would silently give slightly different outputs.
    if activation is F.gelu or (isinstance(activation, nn.GELU) and activation.approximate == "none"):
        return "gelu"
    raise ExportError(f"{where}: unsupported activation {activation!r}; "
                      "vitscope supports relu and exact gelu only")


def _check_layer_norm(norm, where: str) -> float:
    if type(norm) is not nn.LayerNorm or not norm.elementwise_affine:
        raise ExportError(f"{where}: expected nn.LayerNorm with elementwise_affine=True, got {norm!r}")
    return float(norm.eps)


def _check_attention(attn, where: str) -> None:
    """Layer attention must be the plain kind nn.Transformer builds: vitscope's layer files have no room for more."""
    if type(attn) is not nn.MultiheadAttention:
        raise ExportError(f"{where}: expected nn.MultiheadAttention, got {type(attn).__name__}")
    if not attn._qkv_same_embed_dim or attn.in_proj_bias is None or attn.bias_k is not None \
            or attn.add_zero_attn:
        raise ExportError(f"{where}: layer attention must have kdim=vdim=embed_dim, bias=True, "
                          "add_bias_kv=False and add_zero_attn=False")


def _layer_config(layer, where: str) -> Dict[str, object]:
    """The constructor arguments a layer was (effectively) built with."""
    attentions = [("self_attn", layer.self_attn)]
    norms = [layer.norm1, layer.norm2]
    if isinstance(layer, nn.TransformerDecoderLayer):
        attentions.append(("multihead_attn", layer.multihead_attn))
        norms.append(layer.norm3)
    for name, attn in attentions:
        _check_attention(attn, f"{where}.{name}")
        if attn.num_heads != layer.self_attn.num_heads or attn.batch_first != layer.self_attn.batch_first:
            raise ExportError(f"{where}: attention modules disagree on num_heads or batch_first")
    eps = {_check_layer_norm(norm, f"{where}.norm{i + 1}") for i, norm in enumerate(norms)}
    if len(eps) != 1:
        raise ExportError(f"{where}: layer norms use different eps values {sorted(eps)}")
    return {
        "d_model": layer.self_attn.embed_dim,
        "nhead": layer.self_attn.num_heads,
        "dim_feedforward": layer.linear1.out_features,
        "activation": _activation_name(layer.activation, f"{where}.activation"),
        "layer_norm_eps": eps.pop(),
        "batch_first": layer.self_attn.batch_first,
        "norm_first": layer.norm_first,
    }


def _to_numpy(state: Mapping) -> Dict[str, np.ndarray]:
    return {name: tensor.detach().cpu().float().numpy() for name, tensor in state.items()}


def _check_type(module, expected, where: str) -> None:
    # Exact types: a subclass could override forward(), which vitscope would not reproduce.
    if type(module) is not expected:
        raise ExportError(f"{where}: expected {expected.__module__}.{expected.__name__}, "
                          f"got {type(module).__name__}")


def export_transformer(model, path: str, position_mode: str = None) -> None:
    """Writes an nn.Transformer (possibly with custom encoder/decoder built from the stock classes), or
    a bare nn.TransformerEncoder, to `path`.

    position_mode "attention" marks a model run as DETR runs it, with positions added in every
    attention: vitscope then requires them (`vitscope forward --pos --query-pos`).

    num_decoder_layers == 0 gives an encoder-only file: every decoder.* tensor (nn.Transformer still
    creates decoder.norm) is left out. A bare nn.TransformerEncoder gives the same file as the
    encoder-only nn.Transformer holding it: its tensors under encoder.*.
    """
    # Checked before any attribute is read, so anything else (torchvision's VisionTransformer, a
    # timm model) gets this error rather than an AttributeError.
    if type(model) not in (nn.Transformer, nn.TransformerEncoder):
        raise ExportError(f"model: expected torch.nn.Transformer or torch.nn.TransformerEncoder, got "
                          f"{type(model).__module__}.{type(model).__name__}; export_transformer "
                          "writes only those (a CLS-token ViT needs its own export)")
    encoder_only = type(model) is nn.TransformerEncoder
    encoder = model if encoder_only else model.encoder
    decoder_layers = [] if encoder_only else model.decoder.layers
    _check_type(encoder, nn.TransformerEncoder, "encoder")
    if not encoder_only:
        _check_type(model.decoder, nn.TransformerDecoder, "decoder")
    for i, layer in enumerate(encoder.layers):
        _check_type(layer, nn.TransformerEncoderLayer, f"encoder.layers.{i}")
    for i, layer in enumerate(decoder_layers):
        _check_type(layer, nn.TransformerDecoderLayer, f"decoder.layers.{i}")

    num_encoder_layers = len(encoder.layers)
    num_decoder_layers = len(decoder_layers)
    if num_encoder_layers == 0:
        # PyTorch 1.13's TransformerEncoder.forward indexes layers[0], so such a model cannot even run.
        raise ExportError("encoder has no layers (num_encoder_layers must be >= 1)")

    configs = [(f"encoder.layers.{i}", _layer_config(layer, f"encoder.layers.{i}"))
               for i, layer in enumerate(encoder.layers)]
    configs += [(f"decoder.layers.{i}", _layer_config(layer, f"decoder.layers.{i}"))
                for i, layer in enumerate(decoder_layers)]
    config = configs[0][1]
    for where, other in configs[1:]:
        for key, value in other.items():
            if value != config[key]:
                raise ExportError(f"{where}: {key}={value!r} differs from encoder.layers.0 ({config[key]!r}); "
                                  "vitscope files describe all layers with one set of arguments")
    if not encoder_only and (model.d_model != config["d_model"] or model.batch_first != config["batch_first"]):
        raise ExportError(f"nn.Transformer(d_model={model.d_model}, batch_first={model.batch_first}) disagrees "
                          f"with its layers (d_model={config['d_model']}, batch_first={config['batch_first']})")

    norms = {"encoder": encoder.norm,
             "decoder": model.decoder.norm if num_decoder_layers > 0 else None}
    has_norm = {part: norm is not None for part, norm in norms.items()}
    for part, norm in norms.items():
        if norm is not None and _check_layer_norm(norm, f"{part}.norm") != config["layer_norm_eps"]:
            raise ExportError(f"{part}.norm eps {norm.eps!r} differs from the layers' "
                              f"layer_norm_eps {config['layer_norm_eps']!r}")

    if encoder_only:
        state = {f"encoder.{name}": tensor for name, tensor in model.state_dict().items()}
    else:
        state = model.state_dict()
    if num_decoder_layers == 0:
        state = {name: tensor for name, tensor in state.items() if not name.startswith("decoder.")}

    metadata = {
        "architecture": "Transformer",
        "d_model": str(config["d_model"]),
        "nhead": str(config["nhead"]),
        "num_encoder_layers": str(num_encoder_layers),
        "num_decoder_layers": str(num_decoder_layers),
        "dim_feedforward": str(config["dim_feedforward"]),
        "activation": config["activation"],
        "layer_norm_eps": repr(config["layer_norm_eps"]),
        "batch_first": _flag(config["batch_first"]),
        "norm_first": _flag(config["norm_first"]),
        "encoder_norm": _flag(has_norm["encoder"]),
        "decoder_norm": _flag(has_norm["decoder"]),
    }
    if position_mode is not None:
        if position_mode != "attention":
            raise ExportError(f"position_mode: expected 'attention' or None, got {position_mode!r}")
        metadata["position_mode"] = position_mode
    write_safetensors(path, _to_numpy(state), metadata)


def export_mha(module: nn.MultiheadAttention, path: str) -> None:
    """Writes a bare nn.MultiheadAttention (any of its constructor options) to `path`."""
    if type(module) is not nn.MultiheadAttention:
        raise ExportError(f"expected torch.nn.MultiheadAttention, got {type(module).__name__}")
    bias = module.in_proj_bias is not None
    if bias != (module.out_proj.bias is not None):
        raise ExportError("in_proj_bias and out_proj.bias must be both present or both absent")
    metadata = {
        "architecture": "MultiheadAttention",
        "embed_dim": str(module.embed_dim),
        "num_heads": str(module.num_heads),
        "bias": _flag(bias),
        "add_bias_kv": _flag(module.bias_k is not None),
        "add_zero_attn": _flag(module.add_zero_attn),
        "kdim": str(module.kdim),
        "vdim": str(module.vdim),
        "batch_first": _flag(module.batch_first),
    }
    write_safetensors(path, _to_numpy(module.state_dict()), metadata)


def _name_list(names: List[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _check_state_dict(state: Mapping, expected: Mapping) -> None:
    """Raises ExportError listing every way `state` fails to fit the model built from the arguments."""
    problems = []
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    if missing:
        problems.append(f"missing keys: {_name_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_name_list(unexpected)}")
    for name, tensor in state.items():
        if name in expected and tuple(tensor.shape) != tuple(expected[name].shape):
            problems.append(f"{name} has shape {list(tensor.shape)}, the arguments give "
                            f"{list(expected[name].shape)}")
    if problems:
        raise ExportError("the state_dict does not fit the given arguments:\n  " + "\n  ".join(problems) +
                          "\n(check --d-model/--nhead/--num-*-layers/--dim-feedforward, and "
                          "--no-encoder-norm/--no-decoder-norm for models without a final norm)")


def _load_state_dict(path: str) -> Mapping:
    try:
        # weights_only: a state_dict never needs arbitrary unpickling, so do not allow it.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as error:
        raise ExportError(f"{path}: not a plain state_dict ({error}); save one with "
                          "torch.save(model.state_dict(), path) or call export_transformer() from Python") from None
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ExportError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    return state


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Convert a torch.nn.Transformer state_dict (.pt) into a vitscope model file "
                    "(safetensors). Constructor flags mirror nn.Transformer and default to PyTorch's "
                    "defaults; dropout does not matter for inference and is not asked for.")
    parser.add_argument("--state-dict", required=True, metavar="PT",
                        help="file written by torch.save(model.state_dict(), PT)")
    parser.add_argument("--out", required=True, metavar="SAFETENSORS", help="model file to write")
    parser.add_argument("--d-model", type=_positive_int, default=512, help="(default: %(default)s)")
    parser.add_argument("--nhead", type=_positive_int, default=8, help="(default: %(default)s)")
    parser.add_argument("--num-encoder-layers", type=_positive_int, default=6, help="(default: %(default)s)")
    parser.add_argument("--num-decoder-layers", type=_non_negative_int, default=6,
                        help="0 writes an encoder-only model, without decoder tensors (default: %(default)s)")
    parser.add_argument("--dim-feedforward", type=_positive_int, default=2048, help="(default: %(default)s)")
    parser.add_argument("--activation", choices=("relu", "gelu"), default="relu", help="(default: %(default)s)")
    parser.add_argument("--layer-norm-eps", type=float, default=1e-5, help="(default: %(default)s)")
    parser.add_argument("--batch-first", action="store_true", help="inputs are (batch, seq, feature)")
    parser.add_argument("--norm-first", action="store_true", help="pre-norm layers")
    parser.add_argument("--no-encoder-norm", action="store_true",
                        help="the encoder has no final LayerNorm (custom encoder built with norm=None, as in DETR)")
    parser.add_argument("--no-decoder-norm", action="store_true",
                        help="the decoder has no final LayerNorm")
    args = parser.parse_args(argv)
    if args.d_model % args.nhead != 0:
        parser.error(f"--d-model {args.d_model} is not divisible by --nhead {args.nhead}")
    return args


def main(argv=None) -> int:
    args = _parse_args(argv)
    try:
        state = _load_state_dict(args.state_dict)
        model = nn.Transformer(d_model=args.d_model, nhead=args.nhead,
                               num_encoder_layers=args.num_encoder_layers,
                               num_decoder_layers=args.num_decoder_layers,
                               dim_feedforward=args.dim_feedforward, activation=args.activation,
                               layer_norm_eps=args.layer_norm_eps, batch_first=args.batch_first,
                               norm_first=args.norm_first)
        if args.no_encoder_norm:
            model.encoder.norm = None
        if args.no_decoder_norm or args.num_decoder_layers == 0:
            model.decoder.norm = None
        if args.num_decoder_layers == 0:
            # nn.Transformer(num_decoder_layers=0) still makes (and saves) decoder.norm, which never
            # runs: accept a state_dict with or without it.
            state = {name: tensor for name, tensor in state.items() if not name.startswith("decoder.norm.")}
        _check_state_dict(state, model.state_dict())
        model.load_state_dict(state)
        export_transformer(model, args.out)
    except (ExportError, OSError) as error:
        print(f"export_pytorch.py: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
