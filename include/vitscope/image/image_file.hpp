#pragma once
// Images written the way every output of a run is: encoded in memory, then written atomically.

#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace vitscope::image {

// bgr: CV_8UC3. Throws vitscope::Error("write_failed") when it cannot be encoded or written.
// PNGs are encoded by io::encode_png_bgr, 3.5-6.8 times as fast as OpenCV's writer on the views.
void write_png(const std::filesystem::path& path, const cv::Mat& bgr);
void write_jpeg(const std::filesystem::path& path, const cv::Mat& bgr, int quality);

// How a run encodes its pictures. PNG is lossless and the default; JPEG encodes an attention view
// 1.6-2.7 times faster than PNG, in a sixth to a quarter of the bytes; WebP makes the smallest
// files and is the slowest of the three.
enum class PictureFormat { png, jpg, webp };

// "png", "jpg", "webp": also the files' extension.
std::string to_string(PictureFormat format);
// Throws vitscope::Error("bad_picture_format") naming the choices.
PictureFormat parse_picture_format(const std::string& name);
std::vector<std::string> picture_format_names();

// JPEG and WebP at quality 90.
void write_picture(const std::filesystem::path& path, const cv::Mat& bgr, PictureFormat format);

}  // namespace vitscope::image
