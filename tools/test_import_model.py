#!/usr/bin/env python3
"""Checks of tools/import_model.py (they need torch and torchvision, so they stay out of ctest):
    /usr/bin/python3 tools/test_import_model.py
"""

import json
import struct
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import import_model  # noqa: E402
import pytorch_vits  # noqa: E402
from make_vit_goldens import prefix_reference, randomize, seeded  # noqa: E402
from reference_model import reference_mode  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

IMPORTER = Path(__file__).resolve().parent / "import_model.py"


def half_bits(array: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values as the 16-bit words of `dtype` (round to nearest even): F16 is IEEE half, BF16 the top
    16 bits of the float32 after rounding away the low 16 (no NaNs here)."""
    array = np.ascontiguousarray(array, dtype="<f4")
    if dtype == "F16":
        return array.astype("<f2").view("<u2")
    bits = array.view("<u4").astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")


def half_rounded(array: np.ndarray, dtype: str) -> np.ndarray:
    """The float32 values `array` becomes when stored as `dtype` and widened back."""
    if dtype == "F16":
        return half_bits(array, dtype).view("<f2").astype(np.float32)
    return (half_bits(array, dtype).astype(np.uint32) << 16).view(np.float32)


def write_by_hand(path: str, state, dtype_of) -> None:
    """A safetensors file written byte by byte (not by safetensors_io): tensor `name` as dtype_of(name)."""
    header, blobs, offset = {}, [], 0
    for name, value in state.items():
        array = np.ascontiguousarray(value.numpy() if isinstance(value, torch.Tensor) else value, dtype="<f4")
        dtype = dtype_of(name)
        blob = array.tobytes() if dtype == "F32" else half_bits(array, dtype).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


class Folder(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self._tmp.name)
        torch.set_num_threads(1)

    def tearDown(self):
        self._tmp.cleanup()

    def save(self, state, name="checkpoint.pth"):
        path = self.dir / name
        torch.save(state, path)
        return str(path)

    def imported(self, state_or_path, family, **options):
        """Imports a state_dict (or a checkpoint file) and returns (tensors, metadata, notes)."""
        path = state_or_path if isinstance(state_or_path, str) else self.save(state_or_path)
        out = str(self.dir / "model.safetensors")
        notes = import_model.import_model(path, family, out, import_model.options(**options))
        tensors, meta = read_safetensors(out)
        return tensors, meta, notes

    def cli(self, *args):
        return subprocess.run([sys.executable, str(IMPORTER), *args], capture_output=True, text=True)

    def assert_matches_original(self, module, pixels, run=None, **options):
        """The imported file through the spec's definition gives the original module's outputs."""
        randomize(module)
        reference_mode(module)
        self.imported(module.state_dict(), options.pop("family"), **options)
        original = (run or module.outputs)(pixels)
        spec = prefix_reference(str(self.dir / "model.safetensors"), pixels)
        self.assertEqual(sorted(original), sorted(spec))
        worst = max(float((original[k] - spec[k]).abs().max()) for k in original)
        self.assertLess(worst, 1e-5)
        return worst


class SizesAreInferred(Folder):
    def test_timm_deit_distilled(self):
        seeded("deit")
        model = pytorch_vits.TimmViT(img_size=64, patch_size=16, embed_dim=128, depth=3, num_heads=2, mlp_hidden=200,
                                     num_classes=7, distilled=True)
        tensors, meta, _ = self.imported(model.state_dict(), "timm-vit")
        expected = {"architecture": "ImageTransformer", "d_model": "128", "nhead": "2", "num_encoder_layers": "3",
                    "num_decoder_layers": "0", "dim_feedforward": "200", "activation": "gelu",
                    "layer_norm_eps": "1e-06", "batch_first": "false", "norm_first": "true", "encoder_norm": "true",
                    "decoder_norm": "false", "in_chans": "3", "patch_size": "16", "image_size": "64",
                    "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "position": "learned",
                    "position_mode": "input", "num_classes": "7", "head_pool": "cls", "cls_token": "true",
                    "dist_token": "true", "num_register_tokens": "0", "pos_embed_prefix": "2",
                    "pos_embed_grid": "4,4", "pos_resize": "size", "resize_mode": "shorter-crop",
                    "resize_size": "73", "interpolation": "area-linear"}
        self.assertEqual({k: meta[k] for k in expected}, expected)
        self.assertEqual(json.loads(meta["class_names"]), [f"class {k}" for k in range(7)])
        self.assertEqual(tensors["pos_embed"].shape, (1, 2 + 16, 128))
        self.assertEqual(tensors["head_dist.weight"].shape, (7, 128))
        self.assertNotIn("target", meta)

    def test_dinov2_registers_without_head(self):
        seeded("dinov2")
        model = pytorch_vits.TimmViT(img_size=70, patch_size=14, embed_dim=32, depth=2, num_heads=2, num_classes=0,
                                     reg_tokens=4, register_naming="dinov2", init_values=1.0, mask_token=True)
        tensors, meta, notes = self.imported(model.state_dict(), "timm-vit", nhead=2, pos_resize="dino")
        self.assertEqual((meta["num_register_tokens"], meta["pos_embed_prefix"], meta["pos_embed_grid"]),
                         ("4", "1", "5,5"))
        self.assertEqual((meta["num_classes"], meta["image_size"], meta["dim_feedforward"], meta["pos_resize"]),
                         ("0", "70", "128", "dino"))
        self.assertNotIn("head_pool", meta)
        self.assertNotIn("class_names", meta)
        self.assertEqual(tensors["register_tokens"].shape, (1, 4, 32))
        self.assertTrue(any("mask_token" in note for note in notes), notes)

    def test_timm_no_embed_class_registers(self):
        model = pytorch_vits.TimmViT(img_size=48, patch_size=8, embed_dim=64, depth=1, num_heads=1, num_classes=2,
                                     reg_tokens=2, no_embed_class=True)
        tensors, meta, _ = self.imported(model.state_dict(), "timm-vit")
        self.assertEqual((meta["nhead"], meta["pos_embed_prefix"], meta["pos_embed_grid"], meta["num_register_tokens"]),
                         ("1", "0", "6,6", "2"))

    def test_torchvision_defaults(self):
        import torchvision
        model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                     hidden_dim=16, mlp_dim=24, num_classes=3)
        _, meta, _ = self.imported(model.state_dict(), "torchvision-vit", nhead=2)
        self.assertEqual((meta["d_model"], meta["num_encoder_layers"], meta["dim_feedforward"], meta["patch_size"],
                          meta["image_size"], meta["pos_embed_prefix"], meta["pos_embed_grid"], meta["num_classes"],
                          meta["layer_norm_eps"], meta["resize_mode"], meta["resize_size"]),
                         ("16", "2", "24", "8", "32", "1", "4,4", "3", "1e-06", "shorter-crop", "36"))

    def test_hf_defaults(self):
        model = pytorch_vits.HFViTForImageClassification(num_labels=4, image_size=48, patch_size=16, hidden_size=192,
                                                         num_hidden_layers=1, num_attention_heads=3,
                                                         intermediate_size=64)
        _, meta, _ = self.imported(model.state_dict(), "hf-vit")
        self.assertEqual((meta["nhead"], meta["layer_norm_eps"], meta["mean"], meta["std"], meta["resize_mode"],
                          meta["num_classes"], meta["pos_embed_grid"], meta["image_size"]),
                         ("3", "1e-12", "0.5,0.5,0.5", "0.5,0.5,0.5", "stretch", "4", "3,3", "48"))
        self.assertNotIn("resize_size", meta)

    def test_flags_override_what_shapes_cannot_tell(self):
        model = pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=4, num_classes=2)
        names = self.dir / "names.json"
        names.write_text('["cat", "dog"]')
        options = dict(nhead=4, layer_norm_eps=1e-5, image_size=40, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                       pos_resize="dino", resize_mode="patch-crop", resize_size=50, interpolation="cubic",
                       num_classes=2, class_names_list=import_model.read_class_names(str(names)))
        _, meta, _ = self.imported(model.state_dict(), "timm-vit", **options)
        self.assertEqual((meta["nhead"], meta["layer_norm_eps"], meta["image_size"], meta["mean"], meta["std"],
                          meta["pos_resize"], meta["resize_mode"], meta["resize_size"], meta["interpolation"],
                          meta["class_names"]),
                         ("4", "1e-05", "40", "0.5,0.5,0.5", "0.25,0.25,0.25", "dino", "patch-crop", "50", "cubic",
                          '["cat","dog"]'))

    def test_a_non_square_pos_grid_needs_pos_grid(self):
        model = pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=1, num_classes=0)
        state = model.state_dict()
        state["pos_embed"] = torch.randn(1, 1 + 2 * 6, 16)  # a 2x6 grid: 13 rows = 3x3 + 4 without --pos-grid
        with self.assertRaisesRegex(import_model.ImportModelError, r"pos_embed: 13 rows"):
            self.imported(state, "timm-vit")
        _, meta, _ = self.imported(state, "timm-vit", pos_grid=(2, 6))
        self.assertEqual((meta["pos_embed_grid"], meta["pos_embed_prefix"], meta["image_size"]), ("2,6", "1", "48"))

    def test_nhead_must_divide_the_width(self):
        model = pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=24, depth=1, num_heads=1, num_classes=0)
        with self.assertRaisesRegex(import_model.ImportModelError, r"--nhead 5 does not divide the width 24"):
            self.imported(model.state_dict(), "timm-vit", nhead=5)

    def test_class_names_must_match_the_head(self):
        model = pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=1, num_classes=3)
        with self.assertRaisesRegex(import_model.ImportModelError, r"2 names for 3 classes"):
            self.imported(model.state_dict(), "timm-vit", class_names_list=["a", "b"])
        with self.assertRaisesRegex(import_model.ImportModelError, r"--num-classes 4, but .* 3 classes"):
            self.imported(model.state_dict(), "timm-vit", num_classes=4)
        lines = self.dir / "names.txt"
        lines.write_text("tabby cat\nsports car\nmug\n")
        self.assertEqual(import_model.read_class_names(str(lines)), ["tabby cat", "sports car", "mug"])


class CheckpointForms(Folder):
    def model(self):
        seeded("forms")
        return pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3)

    def test_wrapped_prefixed_and_safetensors_checkpoints_give_the_same_file(self):
        state = self.model().state_dict()
        plain, _, _ = self.imported(state, "timm-vit")
        forms = {"model": {"model": state, "epoch": 3},
                 "state_dict": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
                 "teacher": {"teacher": {f"module.backbone.{k}": v for k, v in state.items()}
                             | {"module.head.mlp.0.weight": torch.zeros(4, 16)}}}
        for form, checkpoint in forms.items():
            with self.subTest(form=form):
                tensors, _, notes = self.imported(checkpoint, "timm-vit")
                self.assertEqual(sorted(tensors), sorted(plain))
                for name in plain:
                    np.testing.assert_array_equal(tensors[name], plain[name])
        safetensors_path = str(self.dir / "original.safetensors")
        write_safetensors(safetensors_path, {k: v.numpy() for k, v in state.items()})
        tensors, _, _ = self.imported(safetensors_path, "timm-vit")
        for name in plain:
            np.testing.assert_array_equal(tensors[name], plain[name])


class UnknownTensors(Folder):
    def state(self):
        return pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2,
                                    num_classes=3).state_dict()

    def test_an_unknown_tensor_is_an_error_naming_it(self):
        state = self.state()
        state["blocks.1.attn.q_norm.weight"] = torch.ones(8)
        with self.assertRaisesRegex(import_model.ImportModelError,
                                    r"^blocks\.1\.attn\.q_norm\.weight: unknown tensor"):
            self.imported(state, "timm-vit")

    def test_the_command_line_names_it_in_one_line_and_exits_1(self):
        state = self.state()
        state["blocks.0.attn.q_norm.weight"] = torch.ones(8)
        done = self.cli(self.save(state), "--family", "timm-vit", "--out", str(self.dir / "m.safetensors"))
        self.assertEqual(done.returncode, 1)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertIn("blocks.0.attn.q_norm.weight: unknown tensor", done.stderr)
        self.assertFalse((self.dir / "m.safetensors").exists())

    def test_the_wrong_family_names_a_tensor(self):
        done = self.cli(self.save(self.state()), "--family", "hf-vit", "--out", str(self.dir / "m.safetensors"))
        self.assertEqual(done.returncode, 1)
        self.assertIn("embeddings.patch_embeddings.projection.weight: missing", done.stderr)

    def test_average_pooling_and_pre_logits_are_refused_by_name(self):
        state = self.state()
        state["fc_norm.weight"], state["fc_norm.bias"] = torch.ones(16), torch.zeros(16)
        with self.assertRaisesRegex(import_model.ImportModelError, r"^fc_norm\.bias: timm's fc_norm"):
            self.imported(state, "timm-vit")
        import torchvision
        model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                                                     hidden_dim=16, mlp_dim=24, num_classes=3, representation_size=8)
        with self.assertRaisesRegex(import_model.ImportModelError, r"^heads\.pre_logits\.bias: torchvision"):
            self.imported(model.state_dict(), "torchvision-vit")

    def test_hf_pooler_and_mask_token_are_dropped_with_a_note(self):
        model = pytorch_vits.HFViTModel(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=24, use_mask_token=True)
        tensors, meta, notes = self.imported(model.state_dict(), "hf-vit", nhead=2)
        self.assertTrue(any("pooler.dense.weight" in n for n in notes), notes)
        self.assertTrue(any("embeddings.mask_token" in n for n in notes), notes)
        self.assertEqual(meta["num_classes"], "0")
        self.assertFalse(any("pooler" in name or "mask" in name for name in tensors))


class Mapping(Folder):
    def test_layerscale_is_folded_into_out_proj_and_linear2(self):
        seeded("layerscale")
        model = pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3,
                                     init_values=0.5)
        randomize(model)
        tensors, _, _ = self.imported(model.state_dict(), "timm-vit", nhead=2)
        block = model.blocks[1]
        gamma1, gamma2 = block.ls1.gamma.detach().numpy(), block.ls2.gamma.detach().numpy()
        self.assertGreater(float(np.abs(gamma1 - 1).min()), 1e-3)  # really scales
        layer = "transformer.encoder.layers.1."
        np.testing.assert_allclose(tensors[layer + "self_attn.out_proj.weight"],
                                   gamma1[:, None] * block.attn.proj.weight.detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(tensors[layer + "self_attn.out_proj.bias"],
                                   gamma1 * block.attn.proj.bias.detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(tensors[layer + "linear2.weight"],
                                   gamma2[:, None] * block.mlp.fc2.weight.detach().numpy(), rtol=1e-6)
        np.testing.assert_allclose(tensors[layer + "linear2.bias"], gamma2 * block.mlp.fc2.bias.detach().numpy(),
                                   rtol=1e-6)
        self.assertFalse(any("gamma" in name or name.startswith("ls") for name in tensors))

    def test_layerscale_model_computes_what_the_original_does(self):
        seeded("layerscale forward")
        model = pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3,
                                     init_values=0.5, reg_tokens=2, register_naming="dinov2", pos_resize="dino")
        worst = self.assert_matches_original(model, torch.randn(1, 3, 40, 24), family="timm-vit", nhead=2,
                                             pos_resize="dino")
        print(f"DINOv2-style LayerScale + registers, 5x3 grid: worst difference {worst:.2e}")

    def test_hf_query_key_value_become_in_proj(self):
        seeded("hf qkv")
        model = pytorch_vits.HFViTForImageClassification(num_labels=3, image_size=32, patch_size=8, hidden_size=16,
                                                         num_hidden_layers=2, num_attention_heads=4,
                                                         intermediate_size=24)
        randomize(model)
        tensors, _, _ = self.imported(model.state_dict(), "hf-vit", nhead=4)
        attention = model.vit.encoder.layer[1].attention.attention
        parts = [getattr(attention, n) for n in ("query", "key", "value")]
        np.testing.assert_array_equal(tensors["transformer.encoder.layers.1.self_attn.in_proj_weight"],
                                      torch.cat([p.weight for p in parts]).detach().numpy())
        np.testing.assert_array_equal(tensors["transformer.encoder.layers.1.self_attn.in_proj_bias"],
                                      torch.cat([p.bias for p in parts]).detach().numpy())
        worst = self.assert_matches_original(model, torch.randn(1, 3, 32, 32), family="hf-vit", nhead=4)
        print(f"HF ViTForImageClassification, 4 heads: worst difference {worst:.2e}")

    def test_a_wrong_head_count_would_show(self):
        """The forward check above is sensitive to the head split: the same file with 2 heads differs."""
        seeded("heads")
        model = pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=4, num_classes=0)
        randomize(model)
        reference_mode(model)
        self.imported(model.state_dict(), "timm-vit", nhead=2)
        pixels = torch.randn(1, 3, 32, 32)
        spec = prefix_reference(str(self.dir / "model.safetensors"), pixels)
        self.assertGreater(float((model.outputs(pixels)["cls"] - spec["cls"]).abs().max()), 1e-3)

    def test_torchvision_deit_and_no_embed_class_compute_what_the_originals_do(self):
        import torchvision
        seeded("originals")
        tv = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                  hidden_dim=16, mlp_dim=24, num_classes=3)
        self.assert_matches_original(tv, torch.randn(1, 3, 32, 32), lambda px: pytorch_vits.torchvision_outputs(tv, px),
                                     family="torchvision-vit", nhead=2)
        deit = pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3,
                                    distilled=True)
        self.assert_matches_original(deit, torch.randn(1, 3, 32, 32), family="timm-vit", nhead=2)
        regs = pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3,
                                    reg_tokens=3, no_embed_class=True)
        self.assert_matches_original(regs, torch.randn(1, 3, 32, 32), family="timm-vit", nhead=2)
        regs_pos = pytorch_vits.TimmViT(img_size=48, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=0,
                                        reg_tokens=2)  # registers with positions: pos_embed_prefix 3
        self.assert_matches_original(regs_pos, torch.randn(1, 3, 48, 48), family="timm-vit", nhead=2)


class AntialiasedPositions(Folder):
    """pos_resize size-antialias: timm's dynamic_img_size and DINOv2's torch.hub *_reg models."""

    def test_timm_dynamic_img_size_computes_what_the_original_does(self):
        seeded("dynamic_img_size")
        model = pytorch_vits.TimmViT(img_size=48, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3,
                                     reg_tokens=1, pos_resize="size-antialias")
        for pixels in (torch.randn(1, 3, 32, 72), torch.randn(1, 3, 64, 24), torch.randn(1, 3, 48, 48)):
            with self.subTest(grid=tuple(pixels.shape[2:])):  # 4x9 (rows shrunk), 8x3, the trained 6x6
                self.assert_matches_original(model, pixels, family="timm-vit", nhead=2, pos_resize="size-antialias")
        _, meta, _ = self.imported(model.state_dict(), "timm-vit", pos_resize="size-antialias")
        self.assertEqual(meta["pos_resize"], "size-antialias")

    def test_dinov2_hub_registers_compute_what_the_original_does(self):
        seeded("dinov2 hub reg")
        model = pytorch_vits.TimmViT(img_size=84, patch_size=14, embed_dim=16, depth=2, num_heads=2, num_classes=0,
                                     reg_tokens=4, register_naming="dinov2", init_values=1.0, mask_token=True,
                                     pos_resize="size-antialias")
        worst = self.assert_matches_original(model, torch.randn(1, 3, 42, 112), family="timm-vit", nhead=2,
                                             pos_resize="size-antialias")  # 3x8 from the trained 6x6
        print(f"DINOv2 *_reg form, size-antialias, 3x8 grid: worst difference {worst:.2e}")

    def test_the_other_rules_would_show(self):
        """The same file read with size or dino instead gives other features: the fixtures test the rule."""
        seeded("antialias matters")
        model = pytorch_vits.TimmViT(img_size=48, patch_size=8, embed_dim=16, depth=1, num_heads=2, num_classes=0,
                                     pos_resize="size-antialias")
        randomize(model)
        reference_mode(model)
        pixels = torch.randn(1, 3, 24, 64)  # 3x8 from 6x6
        original = model.outputs(pixels)["features"]
        tensors, meta, _ = self.imported(model.state_dict(), "timm-vit", nhead=2, pos_resize="size-antialias")
        for rule in ("size", "dino"):
            other = str(self.dir / f"{rule}.safetensors")
            write_safetensors(other, tensors, dict(meta, pos_resize=rule))
            with self.subTest(rule=rule):
                self.assertGreater(float((prefix_reference(other, pixels)["features"] - original).abs().max()), 1e-2)

    def test_notes_say_which_rule_fits(self):
        dinov2_reg = pytorch_vits.TimmViT(img_size=28, patch_size=14, embed_dim=16, depth=1, num_heads=1,
                                          num_classes=0, reg_tokens=4, register_naming="dinov2", mask_token=True)
        _, _, notes = self.imported(dinov2_reg.state_dict(), "timm-vit")
        note = next(n for n in notes if "look like DINOv2" in n)
        self.assertIn("--pos-resize dino for DinoVisionTransformer's default (interpolate_offset 0.1", note)
        self.assertIn("--pos-resize size-antialias for the torch.hub dinov2_vit*14_reg models", note)
        self.assertIn("this checkpoint has register_tokens", note)
        timm = pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=1, num_classes=0)
        _, _, notes = self.imported(timm.state_dict(), "timm-vit")
        self.assertTrue(any("dynamic_img_size needs --pos-resize size-antialias" in n for n in notes), notes)
        _, _, notes = self.imported(timm.state_dict(), "timm-vit", pos_resize="size-antialias")
        self.assertFalse(any("dynamic_img_size" in n for n in notes), notes)

    def test_the_command_line_takes_size_antialias(self):
        out = str(self.dir / "m.safetensors")
        state = pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=1,
                                     num_classes=0).state_dict()
        done = self.cli(self.save(state), "--family", "timm-vit", "--out", out, "--pos-resize", "size-antialias")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(read_safetensors(out)[1]["pos_resize"], "size-antialias")


class HalfPrecisionCheckpoints(Folder):
    """F16 / BF16 safetensors checkpoints (as Hugging Face publishes many) import as their float32 values."""

    def file_bytes(self, checkpoint, family, **options):
        out = str(self.dir / "model.safetensors")
        import_model.import_model(checkpoint, family, out, import_model.options(**options))
        return Path(out).read_bytes()

    def test_the_reader_widens_exactly(self):
        values = np.array([1.0, -2.5, 3.14159, np.inf, -np.inf, 1e-40, -0.0, 0.0, 65504.0, 1e-6, 3e38], np.float32)
        path = str(self.dir / "t.safetensors")
        write_by_hand(path, {"b": values, "h": values[:10], "f": values},
                      lambda name: {"b": "BF16", "h": "F16"}.get(name, "F32"))
        tensors, _ = read_safetensors(path)
        self.assertEqual({n: a.dtype for n, a in tensors.items()}, {n: np.dtype(np.float32) for n in "bhf"})
        np.testing.assert_array_equal(tensors["b"], torch.from_numpy(values).to(torch.bfloat16).float().numpy())
        np.testing.assert_array_equal(tensors["h"], torch.from_numpy(values[:10]).half().float().numpy())
        np.testing.assert_array_equal(tensors["f"], values)
        self.assertEqual(np.signbit(tensors["b"][6]), True)  # -0.0 stays negative
        # the hand-written BF16 words are torch's bfloat16 bits
        np.testing.assert_array_equal(half_bits(values, "BF16").view(np.int16),
                                      torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy())

    def test_the_reader_refuses_other_dtypes_and_wrong_sizes_by_name(self):
        path = self.dir / "t.safetensors"
        for entry, message in (({"dtype": "I64", "shape": [1], "data_offsets": [0, 8]},
                                r"tensor 'x' has dtype 'I64', only F32, F16 and BF16"),
                               ({"dtype": "BF16", "shape": [2], "data_offsets": [0, 8]},
                                r"tensor 'x' byte range does not match shape \[2\] of BF16")):
            raw = json.dumps({"x": entry}).encode()
            path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(8))
            with self.subTest(dtype=entry["dtype"]), self.assertRaisesRegex(ValueError, message):
                read_safetensors(str(path))
        done = self.cli(str(path), "--family", "timm-vit", "--out", str(self.dir / "m.safetensors"))
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertIn("byte range does not match shape [2] of BF16", done.stderr)

    def test_representable_values_give_the_same_file_bit_for_bit(self):
        seeded("half exact")
        model = pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3,
                                     reg_tokens=2, register_naming="dinov2", init_values=0.5, mask_token=True)
        randomize(model)
        for dtype in ("BF16", "F16"):
            with self.subTest(dtype=dtype):
                state = {k: half_rounded(v.numpy(), dtype) for k, v in model.state_dict().items()}
                f32 = str(self.dir / "f32.safetensors")
                write_safetensors(f32, state)
                expected = self.file_bytes(f32, "timm-vit", pos_resize="size-antialias")
                half = str(self.dir / f"{dtype}.safetensors")
                write_by_hand(half, state, lambda name: dtype)
                self.assertEqual(self.file_bytes(half, "timm-vit", pos_resize="size-antialias"), expected)
                mixed = str(self.dir / "mixed.safetensors")  # F32 positions, the rest half
                write_by_hand(mixed, state, lambda name: "F32" if name == "pos_embed" else dtype)
                self.assertEqual(self.file_bytes(mixed, "timm-vit", pos_resize="size-antialias"), expected)
                torch_dtype = torch.bfloat16 if dtype == "BF16" else torch.float16
                saved = self.save({k: torch.from_numpy(v).to(torch_dtype) for k, v in state.items()})
                self.assertEqual(self.file_bytes(saved, "timm-vit", pos_resize="size-antialias"), expected)

    def test_a_half_checkpoint_is_the_float32_one_within_its_rounding(self):
        seeded("half rounding")
        model = pytorch_vits.HFViTForImageClassification(num_labels=3, image_size=32, patch_size=8, hidden_size=16,
                                                         num_hidden_layers=2, num_attention_heads=2,
                                                         intermediate_size=24)
        randomize(model)
        state = model.state_dict()  # vit.* and classifier.*, as Hugging Face's model.safetensors
        f32 = str(self.dir / "f32.safetensors")
        write_safetensors(f32, {k: v.numpy() for k, v in state.items()})
        self.file_bytes(f32, "hf-vit", nhead=2)
        expected, expected_meta = read_safetensors(str(self.dir / "model.safetensors"))
        expected = {k: np.array(v) for k, v in expected.items()}
        # round to nearest: relative error <= 2^-8 (BF16's 8 significant bits), 2^-11 (F16's 11; subnormals
        # below 2^-14 are spaced 2^-24)
        for dtype, rtol, atol in (("BF16", 2.0 ** -8, 0.0), ("F16", 2.0 ** -11, 2.0 ** -25)):
            with self.subTest(dtype=dtype):
                half = str(self.dir / f"{dtype}.safetensors")
                write_by_hand(half, state, lambda name: dtype)
                self.file_bytes(half, "hf-vit", nhead=2)
                tensors, meta = read_safetensors(str(self.dir / "model.safetensors"))
                self.assertEqual(meta, expected_meta)
                self.assertEqual(list(tensors), list(expected))
                worst = 0.0
                for name, array in tensors.items():
                    np.testing.assert_allclose(array, expected[name], rtol=rtol, atol=atol, err_msg=name)
                    relative = np.abs(array - expected[name]) / np.maximum(np.abs(expected[name]), 1e-30)
                    worst = max(worst, float(relative.max(initial=0.0)))
                self.assertGreater(worst, 0.0)  # really rounded
                print(f"{dtype} checkpoint: worst relative difference from the F32 import {worst:.2e}")


class CommittedFixtures(unittest.TestCase):
    def test_every_vit_fixture_is_what_the_spec_gives_for_its_model_file(self):
        """tests/fixtures/vit as committed: each expected file within 1e-5 of the model file through the spec."""
        from make_vit_goldens import FIXTURES, model_pixels
        cases = sorted(p for p in FIXTURES.iterdir() if (p / "case.json").exists())
        self.assertGreaterEqual(len(cases), 8)
        for folder in cases:
            case = json.loads((folder / "case.json").read_text())
            _, meta = read_safetensors(str(folder / case["model"]))
            for image in case["images"]:
                with self.subTest(case=folder.name, image=image):
                    spec = prefix_reference(str(folder / case["model"]), model_pixels(image, case, meta))
                    spec["attention_cls"] = spec["attention"][:, 0, :]
                    for kind, name in case["expected"][image].items():
                        expected = np.load(folder / name)
                        self.assertEqual(tuple(spec[kind].shape), expected.shape, kind)
                        self.assertLess(float(np.abs(spec[kind].detach().numpy() - expected).max()), 1e-5, kind)
                    self.assertEqual(list(spec["features"].shape[1:]), case["grid"][image])


class CommandLine(Folder):
    def checkpoint(self):
        return self.save(pytorch_vits.TimmViT(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=1,
                                              num_classes=0).state_dict())

    def assert_usage_error(self, done, text):
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertEqual(len(done.stderr.strip().splitlines()), 1, done.stderr)
        self.assertIn(text, done.stderr)

    def test_family_is_required_and_checked(self):
        out = str(self.dir / "m.safetensors")
        self.assert_usage_error(self.cli(self.checkpoint(), "--out", out), "--family")
        self.assert_usage_error(self.cli(self.checkpoint(), "--family", "deit", "--out", out),
                                "invalid choice: 'deit'")
        self.assert_usage_error(self.cli(self.checkpoint(), "--family", "timm-vit"), "--out")
        self.assertFalse(Path(out).exists())

    def test_other_usage_errors(self):
        out = str(self.dir / "m.safetensors")
        self.assert_usage_error(self.cli(str(self.dir / "missing.pth"), "--family", "timm-vit", "--out", out),
                                "no such file")
        self.assert_usage_error(self.cli(self.checkpoint(), "--family", "timm-vit", "--out", out, "--mean", "0.5,0.5"),
                                "expected 3 values")
        self.assert_usage_error(self.cli(self.checkpoint(), "--family", "timm-vit", "--out", out,
                                         "--pos-resize", "bilinear"), "invalid choice: 'bilinear'")
        self.assert_usage_error(self.cli(self.checkpoint(), "--family", "timm-vit", "--out", out,
                                         "--class-names", str(self.dir / "none.txt")), "--class-names")

    def test_a_good_run_prints_what_it_inferred(self):
        out = str(self.dir / "m.safetensors")
        done = self.cli(self.checkpoint(), "--family", "timm-vit", "--out", out)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("E=16 nhead=1 depth=1", done.stdout)
        self.assertTrue(Path(out).exists())


class Detr(Folder):
    """--family detr: what the shapes tell, the flags, and refusals naming the tensor."""

    def detr(self, pre_norm=False):
        import detr_model
        torch.manual_seed(0)
        backbone = detr_model.slim_resnet("Bottleneck", [1, 2, 1, 1], 8, False, torch.nn.BatchNorm2d)
        return detr_model.build_detr(3, backbone, hidden_dim=32, nheads=4, enc_layers=1, dec_layers=2,
                                     dim_feedforward=48, num_queries=5, pre_norm=pre_norm)

    def test_shapes_and_defaults(self):
        tensors, meta, notes = self.imported({"model": self.detr().state_dict()}, "detr", nhead=4,
                                             class_names_list=["a", "b", "c"])
        expected = {"d_model": "32", "nhead": "4", "num_encoder_layers": "1", "num_decoder_layers": "2",
                    "dim_feedforward": "48", "norm_first": "false", "encoder_norm": "false",
                    "decoder_norm": "true", "num_queries": "5", "num_classes": "3", "patch_size": "32",
                    "backbone_block": "Bottleneck", "backbone_layers": "1,2,1,1", "backbone_planes": "8,16,32,64",
                    "backbone_width_per_group": "64", "backbone_dilation": "false", "detector": "detr",
                    "resize_mode": "shorter-max", "image_size": "800", "max_size": "1333",
                    "class_names": '["a","b","c"]'}
        self.assertEqual({k: meta[k] for k in expected}, expected)
        self.assertEqual(list(tensors["class_embed.weight"].shape), [4, 32])
        self.assertFalse(any(name.endswith("num_batches_tracked") for name in tensors))
        self.assertTrue(any("num_batches_tracked" in note for note in notes))

    def test_pre_norm_and_dilation(self):
        _, meta, _ = self.imported(self.detr(pre_norm=True).state_dict(), "detr", nhead=4, dilation=True)
        self.assertEqual((meta["norm_first"], meta["encoder_norm"], meta["patch_size"], meta["backbone_dilation"]),
                         ("true", "true", "16", "true"))

    def test_refusals_name_the_tensor(self):
        state = self.detr().state_dict()
        extra = dict(state, **{"foo.weight": torch.zeros(2)})
        missing = {k: v for k, v in state.items() if not k.startswith("bbox_embed.layers.2")}
        out = str(self.dir / "m.safetensors")
        for bad, text in ((extra, "foo.weight: unknown tensor"), (missing, "bbox_embed.layers.2.weight: missing")):
            done = self.cli(self.save(bad), "--family", "detr", "--nhead", "4", "--out", out)
            self.assertEqual(done.returncode, 1, done.stderr)
            self.assertIn(text, done.stderr)
        done = self.cli(self.save(state), "--family", "detr", "--nhead", "5", "--out", out)
        self.assertEqual(done.returncode, 1)
        self.assertIn("--nhead 5 does not divide hidden_dim 32", done.stderr)


if __name__ == "__main__":
    unittest.main()
