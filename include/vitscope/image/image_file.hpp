#pragma once
// Images written the way every output of a run is: encoded in memory, then written atomically.

#include <filesystem>

#include <opencv2/core.hpp>

namespace vitscope::image {

// bgr: CV_8UC3. Throws vitscope::Error("write_failed") when it cannot be encoded or written.
void write_png(const std::filesystem::path& path, const cv::Mat& bgr);
void write_jpeg(const std::filesystem::path& path, const cv::Mat& bgr, int quality);

}  // namespace vitscope::image
