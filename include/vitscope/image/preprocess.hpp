#pragma once
// Preprocessing, in the order docs/image_model.md gives: resize keeping the aspect ratio,
// x/255, (x - mean) / std, to (C,H,W), pad with 0 to a multiple of p, batch padded to the largest.

#include <array>
#include <vector>

#include <opencv2/core.hpp>
#include <xtensor/xtensor.hpp>

#include "vitscope/tensor.hpp"

namespace vitscope::image {

struct PreprocessOptions {
  int size = 224;        // the longer side after resizing
  int patch_size = 16;   // p
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
};

// rgb (CV_32FC3, [0,255]) -> the same kind of image with its longer side = size (no copy of the
// pixels when it already is): INTER_AREA when shrinking, INTER_LINEAR when enlarging.
cv::Mat resize_to_size(const cv::Mat& rgb, int size);

struct ImageBatch {
  Tensor4 pixels;                       // (B,C,H,W) normalised; 0 on padding
  xt::xtensor<bool, 3> pixel_mask;      // (B,H,W) true on padding
  std::vector<cv::Size> resized;        // per image, its size after resizing (before padding)
};

// Images of any sizes (CV_32FC3, RGB, [0,255]) -> one padded batch. H and W are multiples of p.
ImageBatch preprocess(const std::vector<cv::Mat>& rgb_images, const PreprocessOptions& options);

}  // namespace vitscope::image
