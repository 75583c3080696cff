#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vitscope::gallery {

// One file of an image's folder as its page presents it.
struct PageFile {
  std::string kind;   // its key in summary.json's "outputs", e.g. "pca"
  std::string file;   // its name inside the image's folder
  std::string title;  // its picture's caption
  int picture = -1;   // its place among the page's pictures; -1: listed under Files only
};

// One image's page. `input` is its relative name (its folder under DIR); `files` are listed under
// Files in this order, the pictures among them shown above by `picture` (ties in this order), the
// Files list naming a picture by its title and any other file by its kind. `info` is what the page
// states (size, grid), `maps` the explorer's data, its maps made by encode_map (null: no explorer).
void write_image_page(const std::filesystem::path& path, const std::string& input,
                      const std::vector<PageFile>& files, const nlohmann::ordered_json& info,
                      const nlohmann::json& maps);

}  // namespace vitscope::gallery
