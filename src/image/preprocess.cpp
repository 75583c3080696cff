#include "vitscope/image/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include <opencv2/imgproc.hpp>

#include "vitscope/error.hpp"

namespace vitscope::image {
namespace {

void check_image(const cv::Mat& rgb) {
  if (rgb.empty() || rgb.type() != CV_32FC3)
    throw Error("bad_input", "expected a non-empty CV_32FC3 RGB image, got " +
                                 std::to_string(rgb.cols) + "x" + std::to_string(rgb.rows) +
                                 " of OpenCV type " + std::to_string(rgb.type()));
}

std::size_t round_up(int n, int multiple) {
  return static_cast<std::size_t>((n + multiple - 1) / multiple * multiple);
}

}  // namespace

cv::Mat resize_to_size(const cv::Mat& rgb, int size) {
  check_image(rgb);
  if (size < 1) throw Error("bad_input", "size must be at least 1, got " + std::to_string(size));
  const double scale = static_cast<double>(size) / std::max(rgb.rows, rgb.cols);
  const cv::Size resized(std::max(1L, std::lround(rgb.cols * scale)),
                         std::max(1L, std::lround(rgb.rows * scale)));
  if (resized == rgb.size()) return rgb;
  cv::Mat out;
  cv::resize(rgb, out, resized, 0, 0, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

ImageBatch preprocess(const std::vector<cv::Mat>& rgb_images, const PreprocessOptions& options) {
  if (rgb_images.empty()) throw Error("bad_input", "no images to preprocess");
  if (options.patch_size < 1)
    throw Error("bad_input",
                "patch_size must be at least 1, got " + std::to_string(options.patch_size));
  std::vector<cv::Mat> resized;
  std::size_t height = 0, width = 0;
  for (const cv::Mat& rgb : rgb_images) {
    resized.push_back(resize_to_size(rgb, options.size));
    height = std::max(height, round_up(resized.back().rows, options.patch_size));
    width = std::max(width, round_up(resized.back().cols, options.patch_size));
  }

  ImageBatch batch;
  const std::size_t count = resized.size();
  batch.pixels = Tensor4::from_shape({count, 3, height, width});
  batch.pixels.fill(0.0f);
  batch.pixel_mask = xt::xtensor<bool, 3>::from_shape({count, height, width});
  batch.pixel_mask.fill(true);
  for (std::size_t b = 0; b < count; ++b) {
    const cv::Mat& image = resized[b];
    batch.resized.push_back(image.size());
    const auto cols = static_cast<std::size_t>(image.cols);
    for (int y = 0; y < image.rows; ++y) {
      const float* rgb = image.ptr<float>(y);
      const std::size_t row = static_cast<std::size_t>(y) * width;
      for (std::size_t c = 0; c < 3; ++c) {
        float* out = batch.pixels.data() + (b * 3 + c) * height * width + row;
        const float mean = options.mean[c], std = options.std[c];
        for (std::size_t x = 0; x < cols; ++x) out[x] = (rgb[3 * x + c] / 255 - mean) / std;
      }
      std::fill_n(batch.pixel_mask.data() + b * height * width + row, cols, false);
    }
  }
  return batch;
}

}  // namespace vitscope::image
