#!/usr/bin/env python3
"""Tests of tools/train_detector.py's assignment, ground-truth rule and mAP (/usr/bin/python3 -m unittest
tools/test_train_detector.py, or run the file)."""

import itertools
import sys
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_detector as td  # noqa: E402


def brute_force(cost: np.ndarray) -> float:
    n, m = cost.shape
    if n <= m:
        return min((sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n)), default=0.0)
    return min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))


class LinearAssignment(unittest.TestCase):
    def test_against_brute_force(self):
        rng = np.random.RandomState(0)
        for trial in range(400):
            n, m = rng.randint(0, 6), rng.randint(1, 8)
            if trial % 3 == 0:  # ties
                cost = rng.randint(0, 3, size=(n, m)).astype(np.float64)
            else:
                cost = rng.normal(size=(n, m)) * 10
            rows, cols = td.linear_assignment(cost)
            k = min(n, m)
            self.assertEqual(len(rows), k)
            self.assertEqual(len(set(rows.tolist())), k)
            self.assertEqual(len(set(cols.tolist())), k)
            self.assertTrue(np.all(np.diff(rows) > 0))
            self.assertAlmostEqual(float(cost[rows, cols].sum()), brute_force(cost), places=9)

    def test_detr_shape(self):  # 10 queries x 5 targets, as the matcher calls it (queries as rows)
        rng = np.random.RandomState(1)
        for _ in range(20):
            cost = rng.rand(10, 5)
            rows, cols = td.linear_assignment(cost)
            self.assertEqual(len(rows), 5)
            self.assertAlmostEqual(float(cost[rows, cols].sum()), brute_force(cost.T), places=9)


class GroundTruth(unittest.TestCase):
    def test_rule(self):
        h, w = 40, 60
        labels = np.zeros((h, w), np.uint8)
        instances = np.zeros((h, w), np.uint8)
        labels[5:20, 10:30], instances[5:20, 10:30] = 2, 1      # 15 x 20 = 300 px, partly covered below
        labels[15:25, 25:40], instances[15:25, 25:40] = 4, 2    # 10 x 15 = 150 px
        labels[30:39, 50:59], instances[30:39, 50:59] = 1, 3    # 81 px: below MIN_AREA
        classes, boxes, pixel_boxes = td.ground_truth(labels, instances)
        self.assertEqual(classes.tolist(), [1, 3])
        np.testing.assert_array_equal(pixel_boxes, [[10, 5, 30, 20], [25, 15, 40, 25]])
        np.testing.assert_allclose(boxes[0], [(10 + 29 + 1) / 2 / w, (5 + 19 + 1) / 2 / h, 20 / w, 15 / h], rtol=1e-6)

    def test_visible_pixels_only(self):
        labels = np.zeros((50, 50), np.uint8)
        instances = np.zeros((50, 50), np.uint8)
        labels[0:30, 0:30], instances[0:30, 0:30] = 1, 1
        labels[0:30, 20:30], instances[0:30, 20:30] = 3, 2       # covers the right third of instance 1
        classes, _, pixel_boxes = td.ground_truth(labels, instances)
        self.assertEqual(classes.tolist(), [0, 2])
        np.testing.assert_array_equal(pixel_boxes[0], [0, 0, 20, 30])


class MeanAveragePrecision(unittest.TestCase):
    def test_average_precision(self):
        # TP, FP, TP of 3 boxes: recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3 -> made monotone 1, 2/3, 2/3
        self.assertAlmostEqual(td.average_precision(np.array([1.0, 0.0, 1.0]), 3), 1 / 3 + 1 / 3 * 2 / 3)
        self.assertAlmostEqual(td.average_precision(np.array([1.0, 1.0]), 2), 1.0)
        self.assertEqual(td.average_precision(np.zeros(0), 2), 0.0)

    def test_greedy_matching(self):
        truths = [{"classes": np.array([0, 0]), "boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)}]
        predictions = [{"labels": np.array([0, 0, 0, 1]), "scores": np.array([0.5, 0.9, 0.8, 0.95]),
                        "boxes": np.array([[20, 20, 30, 31], [0, 0, 10, 11], [0, 0, 10, 10], [0, 0, 10, 10]], float)}]
        per_class, matched = td.match_detections(predictions, truths)
        tp, n, scores = per_class[0]
        self.assertEqual(n, 2)
        self.assertEqual(tp.tolist(), [1, 0, 1])  # 0.9 takes box 0, 0.8 finds only box 1 (IoU 0) unmatched
        self.assertEqual(matched[0].tolist(), [1, 0, -1, -1])
        self.assertEqual(per_class[1][1], 0)

    def test_token_centres(self):
        inside = td.token_centres_inside(np.array([16.0, 0.0, 40.0, 9.0]), 2, 3, 16)
        self.assertEqual(inside.tolist(), [False, True, False, False, False, False])


if __name__ == "__main__":
    unittest.main()
