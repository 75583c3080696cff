#pragma once
// The attention explorer's data: the maps an image's page carries as JSON for gallery.js to draw.

#include <nlohmann/json.hpp>

#include "vitscope/image/analysis.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope::gallery {

// map: (h, w), not empty -> {"max": its maximum, "q": base64 of one byte per value,
// row-major, round(255 * value / max) clamped to 0..255}: a quarter of the size of floats, and
// what gallery.js's decodeMap reads. A map whose maximum is not positive has every byte 0.
nlohmann::json encode_map(const Tensor2& map);

// The explorer's data for one image: per kept module its rows at the plan's points (the CLS
// token's first, for encoder modules of a CLS model; a learned-query model's decoder rows are its
// top queries, and its (Q,Q) decoder self-attention is left out), each head's map encoded; the
// rollout's rows; and the geometry gallery.js draws them with. Null when there is nothing to
// explore.
nlohmann::json explorer_maps(const image::ImageAnalysis& analysis, const image::AnalysisPlan& plan,
                             const image::ImageModel& model);

}  // namespace vitscope::gallery
