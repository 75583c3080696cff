#include "vitscope/image/image_file.hpp"

#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "vitscope/error.hpp"
#include "vitscope/io/atomic_file.hpp"
#include "vitscope/io/png.hpp"

namespace vitscope::image {

namespace {

constexpr int kLossyQuality = 90;  // heat maps keep their tile edges clean at 90

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
  if (bgr.type() != CV_8UC3 || bgr.empty()) {
    throw Error("write_failed", "cannot encode " + path.string() + ": a PNG view needs 8-bit BGR pixels");
  }
  io::write_file_atomically(path.string(), io::encode_png_bgr(bgr.data, static_cast<std::size_t>(bgr.cols),
                                                               static_cast<std::size_t>(bgr.rows), bgr.step));
}

void write_jpeg(const std::filesystem::path& path, const cv::Mat& bgr, int quality) {
  write_encoded(path, bgr, ".jpg", {cv::IMWRITE_JPEG_QUALITY, quality});
}

std::string to_string(PictureFormat format) {
  switch (format) {
    case PictureFormat::png: return "png";
    case PictureFormat::jpg: return "jpg";
    case PictureFormat::webp: return "webp";
  }
  return "png";
}

std::vector<std::string> picture_format_names() { return {"png", "jpg", "webp"}; }

PictureFormat parse_picture_format(const std::string& name) {
  for (PictureFormat format : {PictureFormat::png, PictureFormat::jpg, PictureFormat::webp}) {
    if (to_string(format) == name) return format;
  }
  throw Error("bad_picture_format", "unknown picture format " + name + " (png, jpg or webp)");
}

void write_picture(const std::filesystem::path& path, const cv::Mat& bgr, PictureFormat format) {
  switch (format) {
    case PictureFormat::png: write_png(path, bgr); return;
    case PictureFormat::jpg: write_jpeg(path, bgr, kLossyQuality); return;
    case PictureFormat::webp:
      write_encoded(path, bgr, ".webp", {cv::IMWRITE_WEBP_QUALITY, kLossyQuality});
      return;
  }
}

}  // namespace vitscope::image
