#!/usr/bin/env python3
"""Checks of tools/train_demo.py that need torch (so they stay out of ctest):
    /usr/bin/python3 tools/test_train_demo.py
"""

import argparse
import sys
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_demo  # noqa: E402


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


if __name__ == "__main__":
    unittest.main()
