#!/usr/bin/env python3
"""Checks of tools/import_model.py (they need torch and torchvision, so they stay out of ctest):
    /usr/bin/python3 tools/test_import_model.py
"""

import json
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


class CommittedFixtures(unittest.TestCase):
    def test_every_vit_fixture_is_what_the_spec_gives_for_its_model_file(self):
        """tests/vit_fixtures as committed: each expected file within 1e-5 of the model file through the spec."""
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


if __name__ == "__main__":
    unittest.main()
