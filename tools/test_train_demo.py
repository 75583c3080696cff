#!/usr/bin/env python3
"""Checks of tools/train_demo.py that need torch (so they stay out of ctest):
    /usr/bin/python3 tools/test_train_demo.py
"""

import argparse
import json
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_demo  # noqa: E402
from reference_model import to_sequence  # noqa: E402


class TrainingStream(unittest.TestCase):
    def test_the_producer_process_draws_what_one_process_would(self):
        args = argparse.Namespace(seed=3, steps=3, batch=4)
        rng = np.random.RandomState(args.seed)
        steps = 0
        for got in train_demo.training_batches(args):
            want = train_demo.make_batch([train_demo.make_scene(rng) for _ in range(args.batch)])
            for g, w in zip(got, want):
                self.assertEqual(g.dtype, w.dtype)
                self.assertTrue(bool((g == w).all()))
            steps += 1
        self.assertEqual(steps, args.steps)

    def test_a_producer_that_dies_is_an_error_not_a_hang(self):
        args = argparse.Namespace(seed=3, steps=2, batch=-1)  # a negative batch fails in the producer
        with self.assertRaisesRegex(RuntimeError, "scene producer exited"):
            for _ in train_demo.training_batches(args):
                pass


class ConvolutionalStem(unittest.TestCase):
    def test_the_folded_stem_computes_what_the_trained_one_does_in_evaluation(self):
        torch.manual_seed(5)
        stem = train_demo.BatchNormStem(train_demo.PatchEmbed(3, 8, 16, [4, 5, 6, 7]))
        with torch.no_grad():  # statistics far from the identity, so a missing fold shows
            for norm in stem.norms:
                norm.running_mean.uniform_(-1.0, 1.0)
                norm.running_var.uniform_(0.5, 2.0)
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.5, 0.5)
        stem.eval()
        pixels = torch.randn(2, 3, 48, 32)
        worst = float((stem(pixels) - stem.folded()(pixels)).abs().max())
        print(f"folded stem vs BatchNorm stem: worst difference {worst:.2e}")
        self.assertLess(worst, 1e-5)

    def test_stem_channels_must_be_four_positive_integers(self):
        self.assertEqual(train_demo.stem_channels("16,32,64,96"), [16, 32, 64, 96])
        for bad in ("16,32,64", "16,32,64,96,128", "16,x,64,96", "16,0,64,96"):
            with self.assertRaises(argparse.ArgumentTypeError):
                train_demo.stem_channels(bad)


class DataParallelTraining(unittest.TestCase):
    @staticmethod
    def train(workers: int):
        """(initial, trained) state dicts of a small model after 3 steps on `workers` processes."""
        args = argparse.Namespace(seed=3, steps=3, batch=4, lr=1e-3, d_model=16, nhead=2, encoder_layers=1,
                                  decoder_layers=1, ff=32, norm_first=True, position_mode="attention",
                                  stem=[], threads=1, workers=workers, log_every=1)
        torch.manual_seed(args.seed)
        model = train_demo.build_model(args)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        train_demo.train(model, args)
        return initial, model.state_dict()

    @staticmethod
    def without_key_biases(state: dict) -> dict:
        """state without the key third of every in_proj_bias: softmax ignores a shift shared by all keys,
        so that bias's gradient is rounding noise, which Adam scales up to full-size steps."""
        state = {k: v.clone() for k, v in state.items()}
        for name, value in state.items():
            if name.endswith("in_proj_bias"):
                e = value.numel() // 3
                value[e:2 * e] = 0
        return state

    def test_two_workers_take_the_steps_one_worker_takes(self):
        initial, one = (self.without_key_biases(s) for s in self.train(1))
        two = self.without_key_biases(self.train(2)[1])
        worst = max(float((one[k] - two[k]).abs().max()) for k in one)
        moved = max(float((one[k] - initial[k]).abs().max()) for k in one)
        print(f"\n1 against 2 workers after 3 steps: worst weight difference {worst:.2e} (tolerance 1e-5), "
              f"largest weight change {moved:.2e}")
        self.assertGreater(moved, 1e-4)  # the comparison means something only if training moved the weights
        self.assertLess(worst, 1e-5)

    def test_a_batch_the_workers_cannot_share_is_a_usage_error(self):
        with tempfile.TemporaryDirectory() as directory:  # should the check go, nothing lands in assets/
            for argv in (["--workers", "3"], ["--workers", "0"]):  # the default batch is 32
                with self.assertRaises(SystemExit) as exit_status:
                    train_demo.main(argv + ["--steps", "1", "--no-assets",
                                            "--out", str(Path(directory) / "demo.safetensors")])
                self.assertEqual(exit_status.exception.code, 2)

    def test_a_worker_that_dies_is_an_error_not_a_hang(self):
        def dies_on_worker_1(model, args, batches, workers):
            if torch.distributed.get_rank() == 1:
                raise SystemExit(3)
            return train_worker(model, args, batches, workers)

        train_worker = train_demo.train_worker
        train_demo.train_worker = dies_on_worker_1  # the helper is forked after this, so it runs it too
        try:
            with self.assertRaisesRegex(RuntimeError, "a training worker exited with code 3"):
                self.train(2)
        finally:
            train_demo.train_worker = train_worker


class AttentionFigures(unittest.TestCase):
    def test_attention_maps_are_what_the_forward_feeds_each_module(self):
        args = argparse.Namespace(d_model=16, nhead=2, encoder_layers=2, decoder_layers=1, ff=32, norm_first=True,
                                  position_mode="attention", stem=[])
        torch.manual_seed(4)
        model = train_demo.build_model(args).eval()
        rng = np.random.RandomState(2)
        pixels, pixel_mask, _ = train_demo.make_batch([train_demo.make_scene(rng) for _ in range(2)])
        with torch.no_grad():
            before = model(pixels, pixel_mask)["logits"]
            output, maps = train_demo.attention_maps(model, pixels, pixel_mask)
            after = model(pixels, pixel_mask)["logits"]
            # The decoder's self-attention by hand: pre-norm, its targets are the tokens, positions on q and k.
            p = model.patch_size
            token_mask = pixel_mask[:, ::p, ::p]
            pos = to_sequence(model.position_embedding(token_mask))
            t = model.transformer.decoder.layers[0].norm1(to_sequence(model.patch_embed(pixels)))
            _, want = model.transformer.decoder.layers[0].self_attn(
                t + pos, t + pos, t, key_padding_mask=token_mask.reshape(2, -1), need_weights=True)
        self.assertEqual(set(maps), {"encoder.layers.0.self_attn", "encoder.layers.1.self_attn",
                                     "decoder.layers.0.self_attn", "decoder.layers.0.multihead_attn"})
        worst = float((maps["decoder.layers.0.self_attn"] - want).abs().max())
        print(f"\ncaptured against recomputed decoder self-attention: worst difference {worst:.2e}")
        self.assertLess(worst, 1e-6)
        self.assertTrue(torch.equal(output["logits"], before))  # the capturing forward is the model's own
        self.assertTrue(torch.equal(before, after))  # and the capture leaves the model as it was
        self.assertNotIn("forward", vars(model.transformer.decoder.layers[0].self_attn))
        for name, m in maps.items():
            self.assertLess(float((m.sum(-1) - 1).abs().max()), 1e-5, name)

    def test_evaluate_rewrites_the_held_out_figures_and_keeps_the_rest(self):
        args = argparse.Namespace(d_model=16, nhead=2, encoder_layers=1, decoder_layers=1, ff=32, norm_first=True,
                                  position_mode="attention", stem=[])
        torch.manual_seed(6)
        with tempfile.TemporaryDirectory() as directory:
            out = Path(directory) / "small.safetensors"
            train_demo.export_model(train_demo.build_model(args), str(out))
            report = {"seed": 3, "held_out": {"scenes": 2, "seed": 1003}, "command": "training", "patch_accuracy": -1}
            out.with_suffix(".json").write_text(json.dumps(report))
            self.assertEqual(train_demo.main(["--evaluate", "--threads", "1", "--out", str(out)]), 0)
            rewritten = json.loads(out.with_suffix(".json").read_text())
        self.assertEqual(rewritten["command"], "training")
        self.assertEqual(rewritten["held_out"], {"scenes": 2, "seed": 1003})
        self.assertTrue(0 <= rewritten["patch_accuracy"] <= 1)
        self.assertEqual(set(rewritten["attention_mass"]["per_shape_by_module"]),
                         {"encoder.layers.0.self_attn", "decoder.layers.0.self_attn",
                          "decoder.layers.0.multihead_attn", "encoder rollout"})


if __name__ == "__main__":
    unittest.main()
