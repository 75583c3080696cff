#pragma once
// Attention drawn over the image: each map is a token grid (h_i,w_i) coloured with turbo
// (min-max over the map), blended over the image with the token grid mapped back to pixels as the
// feature views do (views.hpp), padding removed. Views are CV_8UC3 BGR grids of captioned tiles,
// each tile the image at its own resolution, or scaled down so that its longer side is at most
// `max_tile` pixels.

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "vitscope/image/attention.hpp"
#include "vitscope/image/views.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope::image {

// What every attention view draws on: the original image (CV_32FC3 RGB, [0, 255]), where its
// tokens lie, and its real token grid.
struct AttentionCanvas {
  cv::Mat image;
  TokenLayout layout;
  std::array<std::size_t, 2> grid{};
  int max_tile = 320;
  // The image at tile size as BGR, made once by attention_canvas and copied by every tile (a view
  // draws up to dozens of tiles, and views are drawn on several threads at once). Without it,
  // each tile makes its own.
  cv::Mat tile_background{};
  // The same background tinted as a mask's inside, which every mask tile copies from.
  cv::Mat mask_background{};
};

// A canvas with its tile and mask backgrounds made.
AttentionCanvas attention_canvas(const cv::Mat& image, const TokenLayout& layout,
                                 const std::array<std::size_t, 2>& grid, int max_tile = 320);

// One map over the image: `map` (h_i,w_i), the points marked with a ring.
cv::Mat attention_overlay(const Tensor2& map, const AttentionCanvas& canvas,
                          const std::vector<cv::Point2d>& points = {});

// The tokens of `mask` (h_i*w_i, row by row) tinted and outlined over the image, as DINO draws
// its masks.
cv::Mat mask_overlay(const std::vector<bool>& mask, const AttentionCanvas& canvas,
                     const std::vector<cv::Point2d>& points = {});

// The views of points take `rows` (nh,P,S): row i of each head is the attention of the token under
// points[i] over the key tokens (ImageAttention::token_rows of the points' tokens).

// Points: for each point, the fused map of its token's row of an encoder self-attention module,
// one tile per point, the point marked.
cv::Mat points_view(const Tensor3& rows, const std::vector<cv::Point2d>& points,
                    HeadFusion fusion, const AttentionCanvas& canvas);

// Head montage: one row per point: the fused map, then every head's map of that point's token.
cv::Mat heads_view(const Tensor3& rows, const std::vector<cv::Point2d>& points,
                   HeadFusion fusion, const AttentionCanvas& canvas);

// DINO-style masks: the head montage with each map reduced to its top `threshold` share of mass.
cv::Mat masks_view(const Tensor3& rows, const std::vector<cv::Point2d>& points,
                   HeadFusion fusion, float threshold, const AttentionCanvas& canvas);

// Rollout from image_rollout: the CLS token's row when it has one, one tile per point (its
// token's row), then the mean of all rows ("all tokens").
cv::Mat rollout_view(const ImageRollout& rollout, const std::vector<cv::Point2d>& points,
                     const AttentionCanvas& canvas);

// DINO's visualize_attention.py: the CLS token's attention over the patches, `cls` (nh,S) from
// cls_attention: the fused map, then every head's.
cv::Mat cls_heads_view(const Tensor2& cls, HeadFusion fusion, const AttentionCanvas& canvas);

// DINO's threshold masks: each of those maps reduced to its top `threshold` share of mass.
cv::Mat cls_masks_view(const Tensor2& cls, HeadFusion fusion, float threshold,
                       const AttentionCanvas& canvas);

// Cross-attention (nh,L,S) rows as maps over the key tokens: one fused tile per chosen row, with
// its caption (and point, when the rows are tokens under points; box, for a detection's query).
struct CrossRow {
  std::size_t row = 0;
  std::string caption;
  std::vector<cv::Point2d> points;
  std::optional<cv::Rect2d> box;  // in the canvas image's pixels
};
cv::Mat cross_view(const Tensor3& weights, const std::vector<CrossRow>& rows, HeadFusion fusion,
                   const AttentionCanvas& canvas);

}  // namespace vitscope::image
