#include "vitscope/image/image_file.hpp"

#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "vitscope/error.hpp"
#include "vitscope/io/atomic_file.hpp"

namespace vitscope::image {

namespace {

void write_encoded(const std::filesystem::path& path, const cv::Mat& bgr, const std::string& ext,
                   const std::vector<int>& params) {
  std::vector<uchar> bytes;
  if (!cv::imencode(ext, bgr, bytes, params)) {
    throw Error("write_failed", "cannot encode " + path.string());
  }
  io::write_file_atomically(path.string(), std::string(bytes.begin(), bytes.end()));
}

}  // namespace

void write_png(const std::filesystem::path& path, const cv::Mat& bgr) {
  write_encoded(path, bgr, ".png", {});
}

void write_jpeg(const std::filesystem::path& path, const cv::Mat& bgr, int quality) {
  write_encoded(path, bgr, ".jpg", {cv::IMWRITE_JPEG_QUALITY, quality});
}

}  // namespace vitscope::image
