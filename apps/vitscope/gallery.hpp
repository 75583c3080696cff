#pragma once
// The offline gallery of a run: DIR/index.html lists every input with its status, thumbnail and
// error; DIR/<input>/index.html shows one image's views and an attention explorer. Pages load
// DIR/gallery.js and DIR/gallery.css, written by the run: no network, no server.

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

namespace vitscope::cli {

// The file names the gallery gives each image's folder.
extern const char* const kThumbnailFile;
extern const char* const kPageFile;

// A small JPEG of the image (CV_32FC3 RGB) for the index and the explorer's background.
void write_thumbnail(const std::filesystem::path& path, const cv::Mat& rgb);

// One image's page. `input` is its relative name (its folder under DIR), `outputs` its files by
// kind (names inside its folder), `info` what the page states (size, grid), `maps` the
// explorer's data from AttentionPlan::write (null: no explorer).
void write_image_page(const std::filesystem::path& path, const std::string& input,
                      const std::vector<std::pair<std::string, std::string>>& outputs,
                      const nlohmann::ordered_json& info, const nlohmann::json& maps);

// DIR/index.html, DIR/gallery.js and DIR/gallery.css from the run's summary.json contents.
void write_gallery(const std::filesystem::path& out_dir, const nlohmann::ordered_json& summary);

}  // namespace vitscope::cli
