#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace vitscope::gallery {

// Inputs per page of the index: one page of a million cards would be hundreds of megabytes,
// more than a browser opens; a thousand is about 400 KB.
inline constexpr std::size_t kIndexPageSize = 1000;

// The file of page number `page` (from 1) of the index: index.html, then index-2.html, ...
std::string index_page_name(std::size_t page);

// DIR/index.html from the run's summary.json contents, and DIR/gallery.js and DIR/gallery.css,
// which every page of the gallery loads. Beyond page_size (at least 1) inputs the index is split into pages of
// page_size cards, in the summary's order, each linking to the first, previous, next and last;
// pages an earlier, longer run left beyond the last are removed.
void write_index(const std::filesystem::path& out_dir, const nlohmann::ordered_json& summary,
                 std::size_t page_size = kIndexPageSize);

}  // namespace vitscope::gallery
