#include "drawing.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include <opencv2/imgproc.hpp>

#include "vitscope/error.hpp"

namespace vitscope::image {

cv::Mat to_bgr8(const cv::Mat& rgb) {
  cv::Mat rgb8, bgr;
  rgb.convertTo(rgb8, CV_8U);
  cv::cvtColor(rgb8, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

namespace drawing {

namespace {

// out(y, x) = grid(rows[y], cols[x]), for any element type. A token spans many pixel rows, so a
// row that samples the same grid row as the one above is a copy of it.
cv::Mat sample(const cv::Mat& grid, const std::vector<int>& rows, const std::vector<int>& cols) {
  cv::Mat out(static_cast<int>(rows.size()), static_cast<int>(cols.size()), grid.type());
  const std::size_t elem = grid.elemSize();
  const std::size_t row_bytes = elem * cols.size();
  for (int y = 0; y < out.rows; ++y) {
    const int source_row = rows[static_cast<std::size_t>(y)];
    uchar* dst = out.ptr(y);
    if (y > 0 && source_row == rows[static_cast<std::size_t>(y) - 1]) {
      std::memcpy(dst, out.ptr(y - 1), row_bytes);
      continue;
    }
    const uchar* src = grid.ptr(source_row);
    for (int x = 0; x < out.cols; ++x) {
      std::memcpy(dst + x * elem, src + cols[static_cast<std::size_t>(x)] * elem, elem);
    }
  }
  return out;
}

// OpenCV's colormap as a 256-entry table (CV_8UC3). cv::applyColorMap rebuilds the table on
// every call, which cost more than the tiles it coloured; its result is this table looked up.
cv::Mat colormap_table(int map) {
  cv::Mat ramp(1, 256, CV_8U);
  for (int v = 0; v < 256; ++v) ramp.at<uchar>(0, v) = static_cast<uchar>(v);
  cv::Mat table;
  cv::applyColorMap(ramp, table, map);
  return table;
}

cv::Mat colormap(const cv::Mat& gray8, const cv::Mat& table) {
  CV_Assert(gray8.type() == CV_8U);
  cv::Mat bgr(gray8.size(), CV_8UC3);
  const cv::Vec3b* colours = table.ptr<cv::Vec3b>(0);
  for (int y = 0; y < gray8.rows; ++y) {
    const uchar* in = gray8.ptr(y);
    cv::Vec3b* out = bgr.ptr<cv::Vec3b>(y);
    for (int x = 0; x < gray8.cols; ++x) out[x] = colours[in[x]];
  }
  return bgr;
}

// Ten well-separated colours, then their lighter versions (matplotlib's tab20 order), as BGR.
const std::array<cv::Vec3b, 20> kPalette = {{
    {180, 119, 31},  {14, 127, 255},  {44, 160, 44},   {40, 39, 214},   {189, 103, 148},
    {75, 86, 140},   {194, 119, 227}, {127, 127, 127}, {34, 189, 188},  {207, 190, 23},
    {232, 199, 174}, {120, 187, 255}, {138, 223, 152}, {150, 152, 255}, {213, 176, 197},
    {148, 156, 196}, {210, 182, 247}, {199, 199, 199}, {141, 219, 219}, {229, 218, 158},
}};

}  // namespace

cv::Mat stretch(const cv::Mat& values, double lo, double hi) {
  cv::Mat out;
  if (hi > lo) {
    values.convertTo(out, CV_8U, 255.0 / (hi - lo), -lo * 255.0 / (hi - lo));
  } else {
    out = cv::Mat::zeros(values.size(), CV_8U);
  }
  return out;
}

cv::Mat stretch_min_max(const cv::Mat& values) {
  double lo = 0, hi = 0;
  cv::minMaxLoc(values, &lo, &hi);
  return stretch(values, lo, hi);
}

cv::Mat viridis(const cv::Mat& gray8) {
  static const cv::Mat table = colormap_table(cv::COLORMAP_VIRIDIS);
  return colormap(gray8, table);
}

cv::Mat turbo(const cv::Mat& gray8) {
  static const cv::Mat table = colormap_table(cv::COLORMAP_TURBO);
  return colormap(gray8, table);
}

std::vector<int> token_under_pixel(int original, int resized, int patch, int tokens) {
  std::vector<int> index(static_cast<std::size_t>(original));
  for (int x = 0; x < original; ++x) {
    const double r = (x + 0.5) * resized / original;
    index[static_cast<std::size_t>(x)] = std::min(tokens - 1, static_cast<int>(r / patch));
  }
  return index;
}

cv::Mat tokens_to_image(const cv::Mat& grid, const TokenLayout& layout, cv::Size image) {
  return sample(
      grid, token_under_pixel(image.height, layout.resized.height, layout.patch_size, grid.rows),
      token_under_pixel(image.width, layout.resized.width, layout.patch_size, grid.cols));
}

cv::Mat enlarge(const cv::Mat& grid, int factor) {
  std::vector<int> rows(static_cast<std::size_t>(grid.rows * factor));
  std::vector<int> cols(static_cast<std::size_t>(grid.cols * factor));
  for (std::size_t y = 0; y < rows.size(); ++y) rows[y] = static_cast<int>(y) / factor;
  for (std::size_t x = 0; x < cols.size(); ++x) cols[x] = static_cast<int>(x) / factor;
  return sample(grid, rows, cols);
}

cv::Mat blend(const cv::Mat& bgr, const cv::Mat& overlay, double overlay_weight) {
  cv::Mat out;
  cv::addWeighted(bgr, 1.0 - overlay_weight, overlay, overlay_weight, 0.0, out);
  return out;
}

cv::Mat rows_of(const std::vector<std::vector<cv::Mat>>& rows, int gap) {
  int width = 0, height = 0;
  for (const std::vector<cv::Mat>& row : rows) {
    int row_width = 0;
    for (const cv::Mat& tile : row) row_width += (row_width > 0 ? gap : 0) + tile.cols;
    width = std::max(width, row_width);
    height += (height > 0 ? gap : 0) + (row.empty() ? 0 : row.front().rows);
  }
  cv::Mat out(height, width, CV_8UC3, cv::Scalar::all(255));
  int y = 0;
  for (const std::vector<cv::Mat>& row : rows) {
    if (row.empty()) continue;
    int x = 0;
    for (const cv::Mat& tile : row) {
      if (tile.rows != row.front().rows) {
        throw Error("bad_view_input", "the tiles of a row differ in height");
      }
      tile.copyTo(out(cv::Rect(x, y, tile.cols, tile.rows)));
      x += tile.cols + gap;
    }
    y += row.front().rows + gap;
  }
  return out;
}

cv::Mat captioned(const cv::Mat& bgr, const std::string& caption) {
  const int font = cv::FONT_HERSHEY_SIMPLEX;
  const double scale = std::clamp(bgr.cols / 400.0, 0.35, 0.6);
  int baseline = 0;
  const int text_height = cv::getTextSize("Ag", font, scale, 1, &baseline).height;
  const int strip = text_height + baseline + 6;
  cv::Mat out(bgr.rows + strip, bgr.cols, CV_8UC3, cv::Scalar::all(0));
  bgr.copyTo(out(cv::Rect(0, strip, bgr.cols, bgr.rows)));
  cv::putText(out, caption, cv::Point(4, 3 + text_height), font, scale, cv::Scalar::all(255), 1,
              cv::LINE_AA);
  return out;
}

// Beyond the palette, hues a golden angle apart stay distinct from their neighbours.
cv::Vec3b class_colour(std::size_t k) {
  if (k < kPalette.size()) return kPalette[k];
  const double golden = 0.6180339887498949;
  const double hue = std::fmod(static_cast<double>(k) * golden, 1.0) * 180.0;
  cv::Mat hsv(1, 1, CV_8UC3, cv::Scalar(hue, 200, 230));
  cv::Mat bgr;
  cv::cvtColor(hsv, bgr, cv::COLOR_HSV2BGR);
  return bgr.at<cv::Vec3b>(0, 0);
}

}  // namespace drawing

}  // namespace vitscope::image
