#pragma once
// Drawing steps shared by the feature views and the attention views (private to the library).

#include <vector>

#include <opencv2/core.hpp>

#include "vitscope/image/views.hpp"

namespace vitscope::image::drawing {

using image::to_bgr8;

// values (CV_32F) -> CV_8U with lo..hi stretched to 0..255; all 0 when there is no range.
cv::Mat stretch(const cv::Mat& values, double lo, double hi);
cv::Mat stretch_min_max(const cv::Mat& values);

// CV_8U -> CV_8UC3 BGR through a colormap.
cv::Mat viridis(const cv::Mat& gray8);
cv::Mat turbo(const cv::Mat& gray8);

// Along one axis of `original` pixels, the token under each pixel (see tokens_to_image).
std::vector<int> token_under_pixel(int original, int resized, int patch, int tokens);

// A token grid (h,w, any type) drawn at the original image's size: each pixel takes the value of
// the token under it. The pixel's centre, mapped onto the resized image, falls in patch
// floor(r / p); clamped so that a layout that does not quite fit the grid still draws.
cv::Mat tokens_to_image(const cv::Mat& grid, const TokenLayout& layout, cv::Size image);

// Each pixel repeated `factor` times in both directions.
cv::Mat enlarge(const cv::Mat& grid, int factor);

// Half the image, half the overlay (both CV_8UC3).
cv::Mat blend(const cv::Mat& bgr, const cv::Mat& overlay, double overlay_weight = 0.5);

// Rows of tiles, `gap` white pixels between tiles and between rows, each row padded with white
// to the widest; the tiles of a row must have one height. One copy of each tile.
cv::Mat rows_of(const std::vector<std::vector<cv::Mat>>& rows, int gap);

// Class k's colour (BGR): matplotlib's tab20 order, then hues a golden angle apart.
cv::Vec3b class_colour(std::size_t k);

// A short white-on-black caption strip above the image, as wide as the image.
cv::Mat captioned(const cv::Mat& bgr, const std::string& caption);

}  // namespace vitscope::image::drawing
