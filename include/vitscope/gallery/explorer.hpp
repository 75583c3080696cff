#pragma once
// The attention explorer's data: the maps an image's page carries as JSON for gallery.js to draw.

#include <nlohmann/json.hpp>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::gallery {

// map: (h, w), not empty -> {"max": its maximum, "q": base64 of one byte per value,
// row-major, round(255 * value / max) clamped to 0..255}: a quarter of the size of floats, and
// what gallery.js's decodeMap reads. A map whose maximum is not positive has every byte 0.
nlohmann::json encode_map(const Tensor2& map);

}  // namespace vitscope::gallery
