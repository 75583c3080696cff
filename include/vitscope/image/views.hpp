#pragma once
// Pictures of what an image model computed, for people to look at: each view is a CV_8UC3 BGR
// image (ready for cv::imwrite) at the original image's resolution.
//
// Token maps are drawn with nearest-neighbour sampling, so every patch stays a visible block and
// no value is shown that the model did not compute.

#include <cstddef>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::image {

// Where a token grid lies on the original image: the model saw the image resized to `resized` and
// cut into patch_size squares from the top-left, the last row and column possibly partial (see
// docs/image_model.md). Token (i, j) covers the original pixels whose resized position falls in
// its square.
struct TokenLayout {
  cv::Size resized;
  int patch_size = 16;
};

// An image as load_image returns it (CV_32FC3 RGB, [0, 255]) -> CV_8UC3 BGR, for drawing and
// encoding.
cv::Mat to_bgr8(const cv::Mat& rgb);

// The image (CV_32FC3, RGB, [0, 255], as load_image returns it) on the left and, on the right,
// the first three principal components of the E channels over the tokens of features (E,h,w) as
// red, green and blue. Each component's sign makes its largest-magnitude loading positive, and
// its 1st..99th percentile is stretched to 0..255; components without variance are black.
cv::Mat pca_view(const Tensor3& features, const cv::Mat& image, const TokenLayout& layout);

// The `count` channels of features (E,h,w) with the largest mean |activation|, strongest first,
// row by row in a near-square grid with 2-pixel white gaps, each min-max normalised and coloured
// with viridis, each tile scaled by a whole factor so the grid is about `size`.
cv::Mat channels_view(const Tensor3& features, cv::Size size, std::size_t count = 16);

// Each token's L2 norm over its E channels, min-max normalised, coloured with viridis and blended
// half-and-half over the image.
cv::Mat token_norm_view(const Tensor3& features, const cv::Mat& image, const TokenLayout& layout);

// Each token's argmax class over logits (K,h,w), one fixed colour per class blended half-and-half
// over the image, with a legend of the classes shown. A class 0 named "background" is left
// transparent. Missing names read "class k".
cv::Mat class_overlay_view(const Tensor3& logits, const cv::Mat& image, const TokenLayout& layout,
                           const std::vector<std::string>& class_names);

}  // namespace vitscope::image
