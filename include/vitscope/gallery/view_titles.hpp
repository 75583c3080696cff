#pragma once
// The pictures an image's page shows, in the order it shows them, and their captions. The caller
// passes them to the page in each PageFile; they live here until the outputs registry holds them.

#include <string>

namespace vitscope::gallery {

// The caption of kind's picture; kind itself for a kind the page shows no picture of.
std::string view_title(const std::string& kind);

// kind's place among the page's pictures (PageFile::picture); -1 for a kind listed as a file only.
int view_place(const std::string& kind);

}  // namespace vitscope::gallery
