#pragma once
// The detector's figures as tools/train_detector.py measures them (its docstring states each
// rule): ground-truth boxes of a scene, mAP@0.5 with all-point interpolation, and the share of a
// detection's cross-attention that falls inside its object's box.

#include <array>
#include <cstddef>
#include <vector>

#include <opencv2/core.hpp>

#include "scenes.hpp"
#include "vitscope/image/detections.hpp"

namespace vitscope::image {

// Instances with fewer visible pixels are not objects (train_detector.py's MIN_AREA).
constexpr int kMinObjectArea = 100;

struct Object {
  std::size_t label = 0;  // kind - 1: 0 disc, 1 square, 2 triangle, 3 ring
  cv::Rect2d box;         // [x0, x1 + 1] x [y0, y1 + 1] of its visible pixels
};

// Every instance of the scene with at least kMinObjectArea visible pixels, in instance order.
std::vector<Object> scene_objects(const Scene& scene);

double iou(const cv::Rect2d& a, const cv::Rect2d& b);

// One image's predictions (every query, threshold 0) and objects.
struct ScoredImage {
  std::vector<Detection> predictions;
  std::vector<Object> objects;
};

// Per class, the AP at IoU 0.5 over all images (predictions sorted by score, stable in image and
// query order, matched greedily to the unmatched object of the class with the highest IoU).
std::vector<double> average_precision(const std::vector<ScoredImage>& images, std::size_t num_classes);

// For each image, whether each prediction is a true positive at IoU 0.5 (the same matching) and
// the object it matched (-1 when none).
std::vector<std::vector<int>> matched_objects(const std::vector<ScoredImage>& images, std::size_t num_classes);

}  // namespace vitscope::image
