#pragma once
// Decoding image files into what the model reads: RGB float32 in [0, 255] (see
// docs/image_model.md, "Preprocessing" step 1). Every failure is a vitscope::Error for that file.

#include <cstdint>
#include <filesystem>
#include <string>

#include <opencv2/core.hpp>

namespace vitscope::image {

struct LoadLimits {
  std::uint64_t max_pixels = 100'000'000;           // width * height after decoding
  std::uint64_t max_file_bytes = 512ull << 20;      // refused before reading
};

// Lowers OpenCV's own decoder limit (OPENCV_IO_MAX_IMAGE_PIXELS) to max_pixels. OpenCV reads that
// variable once, at its first decode, so call this before any image is read; later calls do nothing.
void limit_opencv_decoder(std::uint64_t max_pixels);

// path -> CV_32FC3, RGB order, values in [0, 255]: gray replicated, alpha composited over white,
// 16-bit divided by 257, EXIF orientation applied. Throws vitscope::Error (codes image_*).
cv::Mat load_image(const std::string& path, const LoadLimits& limits = {});

// Whether the extension (any case) is one OpenCV decodes: .jpg .jpeg .png .bmp .tif .tiff .webp ...
bool has_image_extension(const std::filesystem::path& path);

}  // namespace vitscope::image
