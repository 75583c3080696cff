#pragma once
// Scenes of shapes on textured backgrounds, drawn as tools/train_demo.py draws the demo model's
// training data (its docstring lists every random choice): the same distribution, not the same
// bits, so that vitscope can check the demo model on scenes it has never seen.

#include <cstdint>
#include <random>

#include <opencv2/core.hpp>

namespace vitscope::image {

// Class ids of the demo model: 0 is background.
enum class ShapeKind : std::uint8_t { disc = 1, square = 2, triangle = 3, ring = 4 };

struct Scene {
  cv::Mat rgb;        // CV_32FC3 RGB in [0, 255], as load_image returns images
  cv::Mat labels;     // CV_8U (H,W): the kind of the topmost shape on each pixel, 0 elsewhere
  cv::Mat instances;  // CV_8U (H,W): i for the i-th shape drawn (1-based), 0 elsewhere
};

// One scene of 224x224, 160x224 or 224x160 pixels with 2 to 5 shapes.
Scene make_scene(std::mt19937& rng);

// (H,W) CV_8U with values below num_values -> (H/p, W/p) CV_32S: each p x p patch's most frequent
// value, ties to the smallest. H and W must be multiples of p.
cv::Mat majority_patches(const cv::Mat& map, int patch, int num_values);

}  // namespace vitscope::image
