#!/usr/bin/env python3
"""Checks of tools/export_pytorch.py that need torch (so they stay out of ctest):
    /usr/bin/python3 tools/test_export_pytorch.py
"""

import contextlib
import io
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export_pytorch  # noqa: E402
from export_pytorch import ExportError, export_transformer  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402


def encoder_only_transformer(norm_first=False):
    torch.manual_seed(0)
    return nn.Transformer(d_model=16, nhead=2, num_encoder_layers=2, num_decoder_layers=0,
                          dim_feedforward=24, norm_first=norm_first).eval()


class BareEncoder(unittest.TestCase):
    def test_a_bare_encoder_gives_the_encoder_only_transformer_file(self):
        for norm_first in (False, True):
            model = encoder_only_transformer(norm_first)
            with tempfile.TemporaryDirectory() as tmp:
                export_transformer(model, f"{tmp}/transformer.safetensors")
                export_transformer(model.encoder, f"{tmp}/encoder.safetensors")
                want_tensors, want_metadata = read_safetensors(f"{tmp}/transformer.safetensors")
                got_tensors, got_metadata = read_safetensors(f"{tmp}/encoder.safetensors")
            self.assertEqual(got_metadata, want_metadata)
            self.assertEqual(got_metadata["num_decoder_layers"], "0")
            self.assertEqual(got_metadata["decoder_norm"], "false")
            self.assertEqual(sorted(got_tensors), sorted(want_tensors))
            self.assertTrue(all(name.startswith("encoder.") for name in got_tensors))
            for name, tensor in want_tensors.items():
                self.assertTrue(np.array_equal(got_tensors[name], tensor), name)

    def test_a_bare_encoder_without_a_final_norm(self):
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=12, activation="gelu",
                                           batch_first=True)
        encoder = nn.TransformerEncoder(layer, num_layers=3)
        with tempfile.TemporaryDirectory() as tmp:
            export_transformer(encoder, f"{tmp}/encoder.safetensors")
            tensors, metadata = read_safetensors(f"{tmp}/encoder.safetensors")
        self.assertEqual(metadata["num_encoder_layers"], "3")
        self.assertEqual(metadata["encoder_norm"], "false")
        self.assertEqual(metadata["batch_first"], "true")
        self.assertEqual(metadata["activation"], "gelu")
        self.assertNotIn("encoder.norm.weight", tensors)
        self.assertIn("encoder.layers.2.linear2.weight", tensors)

    def test_anything_else_is_refused_with_its_own_error(self):
        class VisionTransformer(nn.Module):  # what torchvision's has instead of nn.TransformerEncoder
            def __init__(self):
                super().__init__()
                self.encoder = nn.Sequential(nn.Linear(4, 4))

        layer = nn.TransformerEncoderLayer(d_model=8, nhead=2)
        for model in (VisionTransformer(), layer, nn.Linear(4, 4)):
            with tempfile.TemporaryDirectory() as tmp:
                with self.assertRaisesRegex(ExportError, "expected torch.nn.Transformer or "
                                                         "torch.nn.TransformerEncoder, got "):
                    export_transformer(model, f"{tmp}/model.safetensors")

    def test_a_subclassed_encoder_layer_is_refused(self):
        class Layer(nn.TransformerEncoderLayer):
            pass

        encoder = nn.TransformerEncoder(Layer(d_model=8, nhead=2), num_layers=1)
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(ExportError, "encoder.layers.0: expected"):
                export_transformer(encoder, f"{tmp}/model.safetensors")


class PositionMode(unittest.TestCase):
    def test_attention_marks_the_file_and_anything_else_is_refused(self):
        model = encoder_only_transformer()
        with tempfile.TemporaryDirectory() as tmp:
            export_transformer(model, f"{tmp}/plain.safetensors")
            export_transformer(model, f"{tmp}/detr.safetensors", position_mode="attention")
            _, plain = read_safetensors(f"{tmp}/plain.safetensors")
            _, detr = read_safetensors(f"{tmp}/detr.safetensors")
            with self.assertRaises(ExportError):
                export_transformer(model, f"{tmp}/bad.safetensors", position_mode="input")
        self.assertNotIn("position_mode", plain)
        self.assertEqual(detr.pop("position_mode"), "attention")
        self.assertEqual(detr, plain)


class CommandLine(unittest.TestCase):
    def run_main(self, argv):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = export_pytorch.main(argv)
        return code, err.getvalue()

    def test_num_decoder_layers_0_needs_no_decoder_norm(self):
        model = encoder_only_transformer()
        full = model.state_dict()
        self.assertIn("decoder.norm.weight", full)  # PyTorch makes it even without decoder layers
        without = {name: t for name, t in full.items() if not name.startswith("decoder.")}
        with tempfile.TemporaryDirectory() as tmp:
            export_transformer(model, f"{tmp}/want.safetensors")
            want, want_metadata = read_safetensors(f"{tmp}/want.safetensors")
            for label, state in (("with decoder.norm", full), ("without decoder.*", without)):
                torch.save(state, f"{tmp}/model.pt")
                code, err = self.run_main(
                    ["--state-dict", f"{tmp}/model.pt", "--out", f"{tmp}/got.safetensors", "--d-model", "16",
                     "--nhead", "2", "--num-encoder-layers", "2", "--num-decoder-layers", "0",
                     "--dim-feedforward", "24"])
                self.assertEqual(code, 0, f"{label}: {err}")
                got, got_metadata = read_safetensors(f"{tmp}/got.safetensors")
                self.assertEqual(got_metadata, want_metadata, label)
                self.assertEqual(sorted(got), sorted(want), label)

    def test_decoder_layers_with_num_decoder_layers_0_are_unexpected(self):
        torch.manual_seed(0)
        model = nn.Transformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                               dim_feedforward=24)
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(model.state_dict(), f"{tmp}/model.pt")
            code, err = self.run_main(
                ["--state-dict", f"{tmp}/model.pt", "--out", f"{tmp}/got.safetensors", "--d-model", "16",
                 "--nhead", "2", "--num-encoder-layers", "1", "--num-decoder-layers", "0",
                 "--dim-feedforward", "24"])
            self.assertEqual(code, 1)
            self.assertIn("unexpected keys: decoder.layers.0.", err)
            self.assertFalse(Path(f"{tmp}/got.safetensors").exists())


if __name__ == "__main__":
    unittest.main()
