// vitscope::image::decode_image on PNG and JPEG inputs, the formats whose headers vitscope reads
// itself (size, EXIF orientation) so that max_pixels holds before OpenCV allocates. Other formats
// would only fuzz OpenCV's decoders, which vitscope does not own. fuzz.sh runs this target with a
// low -malloc_limit_mb: an allocation above it means a header claimed more pixels than max_pixels
// and the pre-decoding check missed it.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include <opencv2/core.hpp>

#include "fuzz_support.hpp"
#include "vitscope/image/load.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace vitscope::fuzz;
  static const unsigned char kPng[] = {0x89, 'P', 'N', 'G'};
  const bool png = size >= 4 && std::memcmp(data, kPng, 4) == 0;
  const bool jpeg = size >= 2 && data[0] == 0xFF && data[1] == 0xD8;
  if (!png && !jpeg) return -1;  // -1: not added to the corpus

  vitscope::image::LoadLimits limits;
  limits.max_pixels = 1 << 20;  // decoded 16-bit RGBA up to 8 MB, the float RGB result 12 MB
  const std::vector<unsigned char> bytes(data, data + size);
  try {
    const cv::Mat rgb = vitscope::image::decode_image(bytes, kName, limits);
    require(rgb.type() == CV_32FC3 && !rgb.empty(), "result is not a non-empty CV_32FC3");
    require(rgb.total() <= limits.max_pixels, "result has more pixels than max_pixels");
  } catch (const vitscope::Error& e) {
    check_error(e, "image_io_error");
  }
  return 0;
}
