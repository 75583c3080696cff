#pragma once

#include <filesystem>

namespace vitscope::gallery {

// DIR/gallery.js and DIR/gallery.css, which every page of the gallery loads.
void write_shared_files(const std::filesystem::path& out_dir);

}  // namespace vitscope::gallery
