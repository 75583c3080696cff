#include "vitscope/image/attention_views.hpp"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "drawing.hpp"
#include "vitscope/error.hpp"

namespace vitscope::image {

namespace {

using namespace drawing;

constexpr int kGap = 4;
constexpr double kOverlayWeight = 0.6;
constexpr std::size_t kTilesPerRow = 4;
const cv::Scalar kMaskTint(255, 160, 0);  // BGR: a light blue

void require_canvas(const AttentionCanvas& canvas) {
  if (canvas.image.empty() || canvas.image.type() != CV_32FC3) {
    throw Error("bad_view_input", "attention views draw over a CV_32FC3 RGB image");
  }
  if (canvas.grid[0] == 0 || canvas.grid[1] == 0) {
    throw Error("bad_view_input", "attention views need a token grid");
  }
}

cv::Size tile_size(const AttentionCanvas& canvas) {
  const cv::Size image = canvas.image.size();
  const double scale = std::min(1.0, canvas.max_tile / static_cast<double>(std::max(image.width, image.height)));
  return {std::max(1, static_cast<int>(std::lround(image.width * scale))),
          std::max(1, static_cast<int>(std::lround(image.height * scale)))};
}

cv::Mat tile_background(const AttentionCanvas& canvas) {
  const cv::Size size = tile_size(canvas);
  cv::Mat small = canvas.image;
  if (size != canvas.image.size()) cv::resize(canvas.image, small, size, 0, 0, cv::INTER_AREA);
  return to_bgr8(small);
}

// The image as a tile's background, BGR, to draw on.
cv::Mat background(const AttentionCanvas& canvas) {
  if (canvas.tile_background.size() != tile_size(canvas)) return tile_background(canvas);
  return canvas.tile_background.clone();
}

cv::Mat tinted(const cv::Mat& bgr) {
  return blend(bgr, cv::Mat(bgr.size(), CV_8UC3, kMaskTint), kOverlayWeight);
}

// The background of a mask's inside.
cv::Mat mask_background(const AttentionCanvas& canvas) {
  if (canvas.mask_background.size() != tile_size(canvas)) return tinted(background(canvas));
  return canvas.mask_background;
}

void mark_points(cv::Mat& tile, const std::vector<cv::Point2d>& points,
                 const AttentionCanvas& canvas) {
  const double scale = tile.cols / static_cast<double>(canvas.image.cols);
  const int radius = std::max(4, tile.cols / 40);
  for (const cv::Point2d& p : points) {
    const cv::Point centre(static_cast<int>(std::lround(p.x * scale)),
                           static_cast<int>(std::lround(p.y * scale)));
    cv::circle(tile, centre, radius, cv::Scalar(0, 0, 0), 3, cv::LINE_AA);
    cv::circle(tile, centre, radius, cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  }
}

void mark_box(cv::Mat& tile, const cv::Rect2d& box, const AttentionCanvas& canvas) {
  const double scale = tile.cols / static_cast<double>(canvas.image.cols);
  const cv::Point top_left(static_cast<int>(std::lround(box.x * scale)), static_cast<int>(std::lround(box.y * scale)));
  const cv::Point bottom_right(static_cast<int>(std::lround(box.br().x * scale)),
                               static_cast<int>(std::lround(box.br().y * scale)));
  cv::rectangle(tile, top_left, bottom_right, cv::Scalar(0, 0, 0), 3, cv::LINE_AA);
  cv::rectangle(tile, top_left, bottom_right, cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
}

cv::Mat map_mat(const Tensor2& map, const AttentionCanvas& canvas) {
  if (map.shape(0) != canvas.grid[0] || map.shape(1) != canvas.grid[1]) {
    throw Error("bad_view_input", "the attention map does not fit the image's token grid");
  }
  return cv::Mat(static_cast<int>(map.shape(0)), static_cast<int>(map.shape(1)), CV_32F,
                 const_cast<float*>(map.data()))
      .clone();
}

// Tiles in rows of kTilesPerRow.
cv::Mat wrapped(const std::vector<cv::Mat>& tiles) {
  std::vector<std::vector<cv::Mat>> rows;
  for (std::size_t start = 0; start < tiles.size(); start += kTilesPerRow) {
    const auto end = tiles.begin() + static_cast<std::ptrdiff_t>(std::min(tiles.size(), start + kTilesPerRow));
    rows.emplace_back(tiles.begin() + static_cast<std::ptrdiff_t>(start), end);
  }
  return rows_of(rows, kGap);
}

std::string point_caption(const cv::Point2d& p) {
  return "(" + std::to_string(std::lround(p.x)) + ", " + std::to_string(std::lround(p.y)) + ")";
}

std::string fused_caption(HeadFusion fusion, std::size_t heads) {
  return to_string(fusion) + " of " + std::to_string(heads) + " heads";
}

std::vector<float> values_of(const Tensor2& map) { return {map.begin(), map.end()}; }

void require_points(const std::vector<cv::Point2d>& points) {
  if (points.empty()) throw Error("bad_view_input", "this view needs at least one point");
}

void require_point_rows(const Tensor3& rows, const std::vector<cv::Point2d>& points) {
  require_points(points);
  if (rows.shape(1) != points.size()) {
    throw Error("bad_view_input", "the attention rows do not match the points");
  }
}

// For each point a row: the fused map, then each head's, each drawn by `draw`.
template <class Draw>
cv::Mat montage(const Tensor3& rows, const std::vector<cv::Point2d>& points, HeadFusion fusion,
                const AttentionCanvas& canvas, Draw draw) {
  require_canvas(canvas);
  require_point_rows(rows, points);
  const Tensor2 fused = fuse_heads(rows, fusion);
  std::vector<std::vector<cv::Mat>> lines;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const cv::Point2d& p = points[i];
    std::vector<cv::Mat> tiles = {captioned(
        draw(key_map(fused, i, canvas.grid), p),
        point_caption(p) + " " + fused_caption(fusion, rows.shape(0)))};
    for (std::size_t k = 0; k < rows.shape(0); ++k) {
      tiles.push_back(
          captioned(draw(key_map(rows, k, i, canvas.grid), p), "head " + std::to_string(k)));
    }
    lines.push_back(std::move(tiles));
  }
  return rows_of(lines, kGap);
}

// The CLS token's maps, (nh,S): the fused one, then each head's, each drawn by `draw`.
template <class Draw>
cv::Mat cls_montage(const Tensor2& cls, HeadFusion fusion, const AttentionCanvas& canvas, Draw draw) {
  require_canvas(canvas);
  const std::size_t nh = cls.shape(0);
  Tensor3 rows = Tensor3::from_shape({nh, std::size_t{1}, cls.shape(1)});
  std::copy(cls.begin(), cls.end(), rows.begin());
  const Tensor2 fused = fuse_heads(rows, fusion);
  std::vector<cv::Mat> tiles = {captioned(draw(key_map(fused, 0, canvas.grid)), "CLS " + fused_caption(fusion, nh))};
  for (std::size_t k = 0; k < nh; ++k) {
    const Tensor2 head = xt::view(cls, xt::range(k, k + 1), xt::all());
    tiles.push_back(captioned(draw(key_map(head, 0, canvas.grid)), "CLS head " + std::to_string(k)));
  }
  return wrapped(tiles);
}

}  // namespace

AttentionCanvas attention_canvas(const cv::Mat& image, const TokenLayout& layout,
                                 const std::array<std::size_t, 2>& grid, int max_tile) {
  AttentionCanvas canvas{image, layout, grid, max_tile};
  require_canvas(canvas);
  canvas.tile_background = tile_background(canvas);
  canvas.mask_background = tinted(canvas.tile_background);
  return canvas;
}

cv::Mat attention_overlay(const Tensor2& map, const AttentionCanvas& canvas,
                          const std::vector<cv::Point2d>& points) {
  require_canvas(canvas);
  cv::Mat tile = background(canvas);
  const cv::Mat colours = turbo(stretch_min_max(map_mat(map, canvas)));
  tile = blend(tile, tokens_to_image(colours, canvas.layout, tile.size()), kOverlayWeight);
  mark_points(tile, points, canvas);
  return tile;
}

cv::Mat mask_overlay(const std::vector<bool>& mask, const AttentionCanvas& canvas,
                     const std::vector<cv::Point2d>& points) {
  require_canvas(canvas);
  if (mask.size() != canvas.grid[0] * canvas.grid[1]) {
    throw Error("bad_view_input", "the mask does not fit the image's token grid");
  }
  cv::Mat tokens(static_cast<int>(canvas.grid[0]), static_cast<int>(canvas.grid[1]), CV_8U);
  for (std::size_t t = 0; t < mask.size(); ++t) tokens.data[t] = mask[t] ? 255 : 0;
  cv::Mat tile = background(canvas);
  const cv::Mat inside = tokens_to_image(tokens, canvas.layout, tile.size());
  mask_background(canvas).copyTo(tile, inside);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(inside, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  cv::drawContours(tile, contours, -1, cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  mark_points(tile, points, canvas);
  return tile;
}

cv::Mat points_view(const Tensor3& rows, const std::vector<cv::Point2d>& points,
                    HeadFusion fusion, const AttentionCanvas& canvas) {
  require_canvas(canvas);
  require_point_rows(rows, points);
  const Tensor2 fused = fuse_heads(rows, fusion);
  std::vector<cv::Mat> tiles;
  for (std::size_t i = 0; i < points.size(); ++i) {
    tiles.push_back(captioned(attention_overlay(key_map(fused, i, canvas.grid), canvas, {points[i]}),
                              point_caption(points[i])));
  }
  return wrapped(tiles);
}

cv::Mat heads_view(const Tensor3& rows, const std::vector<cv::Point2d>& points,
                   HeadFusion fusion, const AttentionCanvas& canvas) {
  return montage(rows, points, fusion, canvas, [&](const Tensor2& map, const cv::Point2d& p) {
    return attention_overlay(map, canvas, {p});
  });
}

cv::Mat masks_view(const Tensor3& rows, const std::vector<cv::Point2d>& points,
                   HeadFusion fusion, float threshold, const AttentionCanvas& canvas) {
  return montage(rows, points, fusion, canvas, [&](const Tensor2& map, const cv::Point2d& p) {
    return mask_overlay(top_mass_mask(values_of(map), threshold), canvas, {p});
  });
}

cv::Mat rollout_view(const ImageRollout& rollout, const std::vector<cv::Point2d>& points,
                     const AttentionCanvas& canvas) {
  require_canvas(canvas);
  if (rollout.points.shape(0) != points.size()) {
    throw Error("bad_view_input", "the rollout rows do not match the points");
  }
  std::vector<cv::Mat> tiles;
  if (rollout.cls.size() > 0) tiles.push_back(captioned(attention_overlay(rollout.cls, canvas), "CLS token"));
  for (std::size_t i = 0; i < points.size(); ++i) {
    tiles.push_back(captioned(
        attention_overlay(key_map(rollout.points, i, canvas.grid), canvas, {points[i]}),
        point_caption(points[i])));
  }
  tiles.push_back(captioned(attention_overlay(rollout.mean, canvas), "all tokens"));
  return wrapped(tiles);
}

cv::Mat cls_heads_view(const Tensor2& cls, HeadFusion fusion, const AttentionCanvas& canvas) {
  return cls_montage(cls, fusion, canvas, [&](const Tensor2& map) { return attention_overlay(map, canvas); });
}

cv::Mat cls_masks_view(const Tensor2& cls, HeadFusion fusion, float threshold,
                       const AttentionCanvas& canvas) {
  return cls_montage(cls, fusion, canvas, [&](const Tensor2& map) {
    return mask_overlay(top_mass_mask(values_of(map), threshold), canvas);
  });
}

cv::Mat cross_view(const Tensor3& weights, const std::vector<CrossRow>& rows, HeadFusion fusion,
                   const AttentionCanvas& canvas) {
  require_canvas(canvas);
  if (rows.empty()) throw Error("bad_view_input", "the cross-attention view needs a row");
  const Tensor2 fused = fuse_heads(weights, fusion);
  std::vector<cv::Mat> tiles;
  for (const CrossRow& row : rows) {
    cv::Mat tile = attention_overlay(key_map(fused, row.row, canvas.grid), canvas, row.points);
    if (row.box) mark_box(tile, *row.box, canvas);
    tiles.push_back(captioned(tile, row.caption));
  }
  return wrapped(tiles);
}

}  // namespace vitscope::image
