#include "vitscope/gallery/explorer.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace vitscope::gallery {

namespace {

std::string base64(const std::vector<unsigned char>& bytes) {
  static const char* digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
    unsigned value = static_cast<unsigned>(bytes[i]) << 16;
    if (n > 1) value |= static_cast<unsigned>(bytes[i + 1]) << 8;
    if (n > 2) value |= bytes[i + 2];
    for (std::size_t k = 0; k < 4; ++k) {
      out += k <= n ? digits[(value >> (18 - 6 * k)) & 63] : '=';
    }
  }
  return out;
}

}  // namespace

nlohmann::json encode_map(const Tensor2& map) {
  const float top = *std::max_element(map.begin(), map.end());
  std::vector<unsigned char> bytes(map.size(), 0);
  if (top > 0) {
    std::transform(map.begin(), map.end(), bytes.begin(), [&](float v) {
      return static_cast<unsigned char>(std::lround(std::clamp(v / top, 0.0f, 1.0f) * 255));
    });
  }
  return {{"max", top}, {"q", base64(bytes)}};
}

}  // namespace vitscope::gallery
