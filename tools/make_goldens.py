#!/usr/bin/env python3
"""Regenerates tests/fixtures/transformer/<case>/ and the demo assets from seeded PyTorch 1.13 runs.

Usage (Debian's python3-torch only imports from the system interpreter):
    /usr/bin/python3 tools/make_goldens.py

Every reference runs on PyTorch's slow (reference) path: eval() switches dropout off, but grad stays
enabled and parameters require grad, because the eval fast path (no_grad / inference_mode) computes
different results, e.g. zeros at padded positions of a TransformerEncoder.
Each case seeds torch from its own name, so adding or removing a case leaves the others unchanged.
"""

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from export_pytorch import export_mha, export_transformer
from reference_model import detr_decoder_layer, detr_encoder_layer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "transformer"
TOLERANCE = 1e-4
BATCH = 2


# ---------------------------------------------------------------------------------------------
# Weights, inputs and masks

def randomize(module: nn.Module) -> None:
    """Re-draws every parameter so biases and LayerNorms are actually exercised (PyTorch inits them to 0/1)."""
    with torch.no_grad():
        for sub in module.modules():
            for name, param in sub.named_parameters(recurse=False):
                if "bias" in name:  # in_proj_bias, Linear/LayerNorm bias, bias_k, bias_v
                    param.normal_(0.0, 0.3)
                elif isinstance(sub, nn.LayerNorm):
                    param.normal_(1.0, 0.3)
                else:
                    nn.init.xavier_uniform_(param)


def seq(length: int, dim: int, batch_first: bool) -> torch.Tensor:
    return torch.randn(BATCH, length, dim) if batch_first else torch.randn(length, BATCH, dim)


def causal_bool(size: int) -> torch.Tensor:
    return torch.ones(size, size).triu(diagonal=1).bool()


def random_bool_mask(*shape: int) -> torch.Tensor:
    """True = masked. Key 0 is never masked, so no query row loses all its keys (PyTorch gives NaN there)."""
    mask = torch.rand(shape) < 0.4
    mask[..., 0] = False
    return mask


def padding_mask(lengths, size: int) -> torch.Tensor:
    """Bool (N, size) key padding mask: True past each sequence's length (lengths >= 1 keep key 0)."""
    return torch.arange(size).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)


def float_padding_mask(lengths, size: int) -> torch.Tensor:
    """Float (N, size) key padding mask mixing 0, finite negatives and -inf (past each length)."""
    values = torch.where(torch.rand(BATCH, size) < 0.5, torch.zeros(BATCH, size), -3.0 * torch.rand(BATCH, size))
    values[:, 0] = 0.0
    return values.masked_fill(padding_mask(lengths, size), float("-inf"))


def additive(mask: torch.Tensor) -> torch.Tensor:
    return torch.zeros(mask.shape).masked_fill(mask, float("-inf")) if mask.dtype == torch.bool else mask


def merged_float_mask(attn_mask: torch.Tensor, key_padding_mask: torch.Tensor, nhead: int) -> torch.Tensor:
    """(N*nhead, L, S) float mask = attn_mask + key_padding_mask, both additive.

    PyTorch 1.13 mishandles a float key_padding_mask next to an attn_mask (ignored beside a float
    attn_mask, or turned into "nonzero = masked" beside a bool one), while vitscope always adds it.
    The reference therefore gets this single equivalent mask; the fixture keeps the original pair.
    Row b*nhead + h belongs to batch b, head h, as in F.multi_head_attention_forward.
    """
    per_row = key_padding_mask.repeat_interleave(nhead, dim=0).unsqueeze(1)  # (N*nhead, 1, S)
    return additive(attn_mask) + per_row


# ---------------------------------------------------------------------------------------------
# Reference runs

def record_attention(model: nn.Module) -> dict:
    """Makes every MultiheadAttention inside `model` store its per-head weights (N, nhead, L, S).

    nn.Transformer's layers call attention with need_weights=False; on the slow path asking for
    weights does not change the output, so the wrapper asks for them and returns what the layer expects.
    """
    weights = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                        average_attn_weights=True, _original=module.forward, _name=name):
                assert not need_weights, "only nn.Transformer's internal (need_weights=False) calls are recorded"
                output, per_head = _original(query, key, value, key_padding_mask=key_padding_mask,
                                             need_weights=True, attn_mask=attn_mask, average_attn_weights=False)
                weights[_name] = per_head.detach()
                return output, None
            module.forward = forward
    return weights


def reference_mode(module: nn.Module) -> None:
    module.eval()
    assert torch.is_grad_enabled() and all(p.requires_grad for p in module.parameters()), \
        "grad must stay enabled so PyTorch takes its reference (slow) path"


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    array = tensor.detach().numpy()
    return np.ascontiguousarray(array if array.dtype == np.bool_ else array.astype(np.float32))


def check_finite(name: str, tensor: torch.Tensor) -> None:
    assert torch.isfinite(tensor).all(), f"{name}: non-finite reference output (a fully masked row?)"


def write_case(name: str, kind: str, description: str, inputs: dict, expected: torch.Tensor, export,
               extra_arrays: dict, extra_json: dict) -> None:
    """Writes tests/fixtures/transformer/<name>/: model.safetensors (via `export`), inputs, out.npy and case.json.

    An input tensor passed under several names (self-attention's query/key/value) is stored once.
    `extra_arrays` maps case.json-relative paths to further tensors (attention weights), and
    `extra_json` adds kind-specific case.json entries.
    """
    folder = FIXTURES / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    export(str(folder / "model.safetensors"))

    files = {}
    saved = []  # (tensor, file name), compared by identity
    for key, tensor in inputs.items():
        file_name = next((f for t, f in saved if t is tensor), None)
        if file_name is None:
            file_name = f"{key}.npy"
            np.save(folder / file_name, to_numpy(tensor))
            saved.append((tensor, file_name))
        files[key] = file_name
    np.save(folder / "out.npy", to_numpy(expected))
    for relative, tensor in extra_arrays.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        np.save(folder / relative, to_numpy(tensor))

    case = {"kind": kind, "description": description, "tolerance": TOLERANCE, "model": "model.safetensors",
            "inputs": files, "expected": "out.npy", **extra_json}
    (folder / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    print(f"{name:46s} max|out| = {expected.abs().max().item():.4f}")


def transformer_case(name: str, description: str, model: nn.Transformer, inputs: dict,
                     reference_inputs: dict = None) -> None:
    """Runs `model` on `inputs` (encoder only when there is no "tgt") and writes the fixture.

    `reference_inputs` replaces `inputs` for the PyTorch run when 1.13 would not compute what
    vitscope defines (see merged_float_mask).
    """
    reference_mode(model)
    weights = record_attention(model)
    ref = reference_inputs or inputs
    if "tgt" in ref:
        out = model(**ref)
    else:
        out = model.encoder(ref["src"], mask=ref.get("src_mask"),
                            src_key_padding_mask=ref.get("src_key_padding_mask"))
    check_finite(name, out)
    attention = {}
    for module_name, per_head in weights.items():
        check_finite(f"{name} {module_name}", per_head)
        attention[module_name] = f"attn/{module_name}.npy"
    write_case(name, "transformer", description, inputs, out, lambda path: export_transformer(model, path),
               {attention[m]: w for m, w in weights.items()}, {"attention": attention})


def mha_case(name: str, description: str, module: nn.MultiheadAttention, inputs: dict,
             average_attn_weights: bool) -> None:
    reference_mode(module)
    out, weights = module(inputs["query"], inputs["key"], inputs["value"],
                          key_padding_mask=inputs.get("key_padding_mask"), attn_mask=inputs.get("attn_mask"),
                          need_weights=True, average_attn_weights=average_attn_weights)
    check_finite(name, out)
    check_finite(name, weights)
    write_case(name, "mha", description, inputs, out, lambda path: export_mha(module, path),
               {"weights.npy": weights},
               {"need_weights": True, "average_attn_weights": average_attn_weights,
                "expected_weights": "weights.npy"})


def seeded(name: str) -> None:
    torch.manual_seed(zlib.crc32(name.encode()))


def new_transformer(**kwargs) -> nn.Transformer:
    model = nn.Transformer(**kwargs)
    randomize(model)
    return model


# ---------------------------------------------------------------------------------------------
# Cases

def transformer_cases() -> None:
    name = "transformer_defaults"
    seeded(name)
    model = new_transformer(d_model=16, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=32)
    transformer_case(name, "seq-first, post-norm, relu, 2+2 layers, no masks", model,
                     {"src": seq(6, 16, False), "tgt": seq(5, 16, False)})

    name = "transformer_batch_first_norm_first_gelu"
    seeded(name)
    model = new_transformer(d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=24,
                            activation="gelu", layer_norm_eps=1e-3, batch_first=True, norm_first=True)
    transformer_case(name, "batch_first, pre-norm, gelu, layer_norm_eps=1e-3, 2+1 layers, no masks", model,
                     {"src": seq(5, 16, True), "tgt": seq(4, 16, True)})

    name = "transformer_float_masks"
    seeded(name)
    S, T = 6, 5
    model = new_transformer(d_model=12, nhead=3, num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=20)
    transformer_case(name, "float masks: causal tgt_mask (generate_square_subsequent_mask), "
                           "random finite src_mask (S,S) and memory_mask (T,S)", model,
                     {"src": seq(S, 12, False), "tgt": seq(T, 12, False),
                      "src_mask": 2.0 * torch.randn(S, S),
                      "tgt_mask": nn.Transformer.generate_square_subsequent_mask(T),
                      "memory_mask": 2.0 * torch.randn(T, S)})

    name = "transformer_bool_masks"
    seeded(name)
    S, T = 7, 5
    model = new_transformer(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=16,
                            batch_first=True)
    transformer_case(name, "2-D bool src_mask, causal tgt_mask, memory_mask and bool src/tgt/memory "
                           "key padding masks (True = masked), batch_first", model,
                     {"src": seq(S, 8, True), "tgt": seq(T, 8, True),
                      "src_mask": random_bool_mask(S, S), "tgt_mask": causal_bool(T),
                      "memory_mask": random_bool_mask(T, S),
                      "src_key_padding_mask": padding_mask([S, 4], S),
                      "tgt_key_padding_mask": padding_mask([3, T], T),
                      "memory_key_padding_mask": padding_mask([5, 2], S)})

    name = "transformer_float_key_padding"
    seeded(name)
    S, T = 6, 4
    model = new_transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16)
    transformer_case(name, "float src/tgt/memory key padding masks (0, finite negatives, -inf), no attn masks",
                     model,
                     {"src": seq(S, 8, False), "tgt": seq(T, 8, False),
                      "src_key_padding_mask": float_padding_mask([S, 4], S),
                      "tgt_key_padding_mask": float_padding_mask([T, 3], T),
                      "memory_key_padding_mask": float_padding_mask([5, S], S)})

    name = "transformer_float_key_padding_with_attn_masks"
    seeded(name)
    S, T, nhead = 6, 5, 2
    model = new_transformer(d_model=8, nhead=nhead, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16)
    inputs = {"src": seq(S, 8, False), "tgt": seq(T, 8, False),
              "src_mask": 2.0 * torch.randn(S, S),
              "tgt_mask": nn.Transformer.generate_square_subsequent_mask(T),
              "memory_mask": random_bool_mask(T, S),
              "src_key_padding_mask": float_padding_mask([S, 4], S),
              "tgt_key_padding_mask": float_padding_mask([T, 3], T),
              "memory_key_padding_mask": float_padding_mask([4, S], S)}
    reference = {"src": inputs["src"], "tgt": inputs["tgt"]}
    for attn, kpm in (("src_mask", "src_key_padding_mask"), ("tgt_mask", "tgt_key_padding_mask"),
                      ("memory_mask", "memory_key_padding_mask")):
        reference[attn] = merged_float_mask(inputs[attn], inputs[kpm], nhead)
    transformer_case(name, "float key padding masks together with float src/tgt masks and a bool memory_mask; "
                           "the key padding mask is additive (reference computed with the equivalent "
                           "merged 3-D float masks, since PyTorch 1.13 mishandles this combination)",
                     model, inputs, reference)

    name = "transformer_3d_masks"
    seeded(name)
    S, T, nhead = 5, 4, 2
    model = new_transformer(d_model=8, nhead=nhead, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16)
    transformer_case(name, "3-D masks: float src_mask (N*nhead,S,S), bool memory_mask (N*nhead,T,S), "
                           "2-D causal tgt_mask", model,
                     {"src": seq(S, 8, False), "tgt": seq(T, 8, False),
                      "src_mask": 2.0 * torch.randn(BATCH * nhead, S, S),
                      "tgt_mask": nn.Transformer.generate_square_subsequent_mask(T),
                      "memory_mask": random_bool_mask(BATCH * nhead, T, S)})

    name = "transformer_encoder_only"
    seeded(name)
    S = 6
    model = new_transformer(d_model=12, nhead=3, num_encoder_layers=2, num_decoder_layers=0, dim_feedforward=24,
                            batch_first=True)
    transformer_case(name, "encoder-only model (num_decoder_layers=0, no decoder tensors in the file), "
                           "batch_first, bool src_key_padding_mask; out = encoder incl. encoder.norm", model,
                     {"src": seq(S, 12, True), "src_key_padding_mask": padding_mask([S, 3], S)})

    name = "transformer_single_head"
    seeded(name)
    T = 5
    model = new_transformer(d_model=8, nhead=1, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16,
                            activation="gelu")
    transformer_case(name, "nhead=1, gelu, causal tgt_mask", model,
                     {"src": seq(4, 8, False), "tgt": seq(T, 8, False),
                      "tgt_mask": nn.Transformer.generate_square_subsequent_mask(T)})

    name = "transformer_detr_no_encoder_norm"
    seeded(name)
    S = 7
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32)
    model = new_transformer(d_model=16, nhead=4, num_decoder_layers=1, dim_feedforward=32,
                            custom_encoder=nn.TransformerEncoder(layer, 2, norm=None))
    transformer_case(name, "DETR-style custom encoder built with norm=None (encoder_norm=false), "
                           "2+1 layers, bool src and memory key padding masks", model,
                     {"src": seq(S, 16, False), "tgt": seq(3, 16, False),
                      "src_key_padding_mask": padding_mask([S, 5], S),
                      "memory_key_padding_mask": padding_mask([S, 5], S)})

    name = "transformer_full_model_src_only"
    seeded(name)
    S = 5
    model = new_transformer(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=1, dim_feedforward=16,
                            norm_first=True)
    transformer_case(name, "encoder-decoder model given only src: out = model.encoder(src, src_mask, "
                           "src_key_padding_mask) incl. encoder.norm; pre-norm, float src_mask, bool padding",
                     model,
                     {"src": seq(S, 8, False), "src_mask": 2.0 * torch.randn(S, S),
                      "src_key_padding_mask": padding_mask([3, S], S)})


def detr_positions_case() -> None:
    """DETR's transformer: positions added in every attention (its published transformer.py), run
    through nn.Transformer's own layers by reference_model's DETR layer functions."""
    name = "transformer_detr_positions"
    seeded(name)
    S, T, E = 7, 3, 16
    layer = nn.TransformerEncoderLayer(d_model=E, nhead=4, dim_feedforward=32)
    model = new_transformer(d_model=E, nhead=4, num_decoder_layers=2, dim_feedforward=32,
                            custom_encoder=nn.TransformerEncoder(layer, 2, norm=None))
    reference_mode(model)
    weights = record_attention(model)
    src, pos, query_pos = seq(S, E, False), seq(S, E, False), seq(T, E, False)
    tgt = torch.zeros(T, BATCH, E)  # DETR's decoder starts from zeros; its queries are query_pos
    padding = padding_mask([S, 5], S)
    memory = src
    for encoder_layer in model.encoder.layers:
        memory = detr_encoder_layer(encoder_layer, memory, pos, padding)
    out = tgt
    for decoder_layer in model.decoder.layers:
        out = detr_decoder_layer(decoder_layer, out, memory, pos, query_pos, None, padding)
    out = model.decoder.norm(out)
    check_finite(name, out)
    attention = {module_name: f"attn/{module_name}.npy" for module_name in weights}
    write_case(name, "transformer", "DETR's positions: pos added to the encoder's queries and keys and "
                                    "the cross-attention keys, query_pos to the decoder's queries and "
                                    "self-attention keys; zero tgt, encoder without norm, padding masks",
               {"src": src, "tgt": tgt, "pos": pos, "query_pos": query_pos,
                "src_key_padding_mask": padding, "memory_key_padding_mask": padding},
               out, lambda path: export_transformer(model, path, position_mode="attention"),
               {attention[m]: w for m, w in weights.items()}, {"attention": attention})


def mha_cases() -> None:
    name = "mha_kdim_vdim"
    seeded(name)
    module = nn.MultiheadAttention(8, 2, kdim=6, vdim=10)
    randomize(module)
    mha_case(name, "kdim=6, vdim=10 != embed_dim=8 (separate q/k/v_proj_weight), seq-first, per-head weights",
             module, {"query": torch.randn(4, BATCH, 8), "key": torch.randn(5, BATCH, 6),
                      "value": torch.randn(5, BATCH, 10)}, average_attn_weights=False)

    name = "mha_bias_kv_zero_attn"
    seeded(name)
    L, S = 4, 5
    module = nn.MultiheadAttention(8, 2, add_bias_kv=True, add_zero_attn=True)
    randomize(module)
    mha_case(name, "add_bias_kv + add_zero_attn with bool attn_mask (L,S) and bool key_padding_mask (N,S); "
                   "weights (N,L,S+2) averaged over heads", module,
             {"query": torch.randn(L, BATCH, 8), "key": torch.randn(S, BATCH, 8), "value": torch.randn(S, BATCH, 8),
              "attn_mask": random_bool_mask(L, S), "key_padding_mask": padding_mask([S, 3], S)},
             average_attn_weights=True)

    name = "mha_no_bias_batch_first_3d_mask"
    seeded(name)
    L, S, nhead = 3, 6, 3
    module = nn.MultiheadAttention(12, nhead, bias=False, batch_first=True)
    randomize(module)
    mha_case(name, "bias=False, batch_first, 3-D float attn_mask (N*nhead,L,S), averaged weights", module,
             {"query": torch.randn(BATCH, L, 12), "key": torch.randn(BATCH, S, 12), "value": torch.randn(BATCH, S, 12),
              "attn_mask": 2.0 * torch.randn(BATCH * nhead, L, S)},
             average_attn_weights=True)

    name = "mha_self_attention"
    seeded(name)
    module = nn.MultiheadAttention(16, 4)
    randomize(module)
    x = torch.randn(5, BATCH, 16)
    mha_case(name, "plain self-attention (query is key is value, one input file), seq-first, per-head weights",
             module, {"query": x, "key": x, "value": x}, average_attn_weights=False)


def demo_assets() -> None:
    """assets/models/tiny.safetensors plus inputs and PyTorch's output, for README users to compare."""
    seeded("demo_tiny")
    model = new_transformer(d_model=64, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=128)
    reference_mode(model)
    src, tgt = seq(16, 64, False), seq(8, 64, False)
    out = model(src, tgt)
    check_finite("demo", out)
    (ROOT / "assets" / "models").mkdir(parents=True, exist_ok=True)
    inputs_dir = ROOT / "assets" / "inputs"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    export_transformer(model, str(ROOT / "assets" / "models" / "tiny.safetensors"))
    for file_name, tensor in (("src.npy", src), ("tgt.npy", tgt), ("out.npy", out)):
        np.save(inputs_dir / file_name, to_numpy(tensor))
    print(f"{'assets/models/tiny.safetensors':46s} max|out| = {out.abs().max().item():.4f}")


def main() -> None:
    # One thread: BLAS reductions then run in a fixed order, so reruns give bit-identical files.
    torch.set_num_threads(1)
    transformer_cases()
    detr_positions_case()
    mha_cases()
    demo_assets()


if __name__ == "__main__":
    main()
