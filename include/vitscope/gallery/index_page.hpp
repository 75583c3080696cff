#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

namespace vitscope::gallery {

// DIR/index.html from the run's summary.json contents, and DIR/gallery.js and DIR/gallery.css,
// which every page of the gallery loads.
void write_index(const std::filesystem::path& out_dir, const nlohmann::ordered_json& summary);

}  // namespace vitscope::gallery
