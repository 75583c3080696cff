#pragma once

#include <filesystem>

#include <opencv2/core.hpp>

namespace vitscope::gallery {

// A small JPEG of the image (CV_32FC3 RGB) for the index and the explorer's background.
void write_thumbnail(const std::filesystem::path& path, const cv::Mat& rgb);

}  // namespace vitscope::gallery
