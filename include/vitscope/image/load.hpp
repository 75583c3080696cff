#pragma once
// Decoding image files into what the model reads: RGB float32 in [0, 255] (see
// docs/image_model.md, "Preprocessing" step 1). Every failure is a vitscope::Error for that file.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace vitscope::image {

struct LoadLimits {
  std::uint64_t max_pixels = 100'000'000;           // width * height after decoding
  std::uint64_t max_file_bytes = 512ull << 20;      // refused before reading
};

// path -> CV_32FC3, RGB order, values in [0, 255]: gray replicated, alpha composited over white,
// 16-bit divided by 257, float32 (EXR, HDR, PFM, TIFF) taken as [0, 1] and multiplied by 255 (not
// clipped), EXIF orientation of JPEGs applied. Throws vitscope::Error (codes image_*, listed in
// src/image/load.cpp).
cv::Mat load_image(const std::string& path, const LoadLimits& limits = {});

// The same checks and result for a file's bytes already in memory; name starts error messages.
cv::Mat decode_image(const std::vector<unsigned char>& bytes, const std::string& name,
                     const LoadLimits& limits = {});

// Whether the extension (any case) is one OpenCV decodes: .jpg .jpeg .png .bmp .tif .tiff .webp ...
bool has_image_extension(const std::filesystem::path& path);

}  // namespace vitscope::image
