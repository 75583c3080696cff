#pragma once
// A detector's queries as DETR's notebook reads them: each query's best real class and its box in
// the picture's pixels, the confident ones kept, and the picture with their boxes drawn.

#include <cstddef>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::image {

struct Detection {
  std::size_t query = 0;
  std::size_t label = 0;  // class index in 0..K-1 (never "no object")
  std::string name;       // its class name
  double score = 0;       // softmax probability of the label over the K+1 classes
  cv::Rect2d box;         // in picture pixels: x, y of the top-left corner, width, height
};

// (cx, cy, w, h) as fractions of a picture of `size` -> that box in its pixels.
cv::Rect2d box_in_pixels(const float* cxcywh, cv::Size size);

// logits (Q,K+1) and boxes (Q,4) -> every query whose best real class scores at least
// `threshold` (0 keeps every query), best first (ties by query). names[k] names class k.
std::vector<Detection> detect(const Tensor2& logits, const Tensor2& boxes,
                              const std::vector<std::string>& names, cv::Size picture,
                              double threshold);

// The picture (CV_32FC3 RGB) with each detection's box and "name score%" label, as BGR.
cv::Mat detections_view(const cv::Mat& picture, const std::vector<Detection>& detections);

}  // namespace vitscope::image
