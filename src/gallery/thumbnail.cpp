#include "vitscope/gallery/thumbnail.hpp"

#include <algorithm>

#include <opencv2/imgproc.hpp>

#include "vitscope/image/image_file.hpp"

namespace vitscope::gallery {

namespace {

constexpr int kThumbnailSide = 480;

}  // namespace

void write_thumbnail(const std::filesystem::path& path, const cv::Mat& rgb) {
  const double scale = std::min(1.0, kThumbnailSide / static_cast<double>(std::max(rgb.cols, rgb.rows)));
  cv::Mat small = rgb;
  if (scale < 1.0) cv::resize(rgb, small, cv::Size(), scale, scale, cv::INTER_AREA);
  cv::Mat rgb8, bgr;
  small.convertTo(rgb8, CV_8U);
  cv::cvtColor(rgb8, bgr, cv::COLOR_RGB2BGR);
  image::write_jpeg(path, bgr, 85);
}

}  // namespace vitscope::gallery
