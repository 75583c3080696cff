#pragma once
// The pieces the gallery's pages share, filled in from the HTML fragments of assets/gallery/.

#include <string>

#include <nlohmann/json.hpp>

namespace vitscope::gallery {

// From <!doctype html> to </head>: the page's title and its stylesheet, found from DIR via root.
std::string page_head(const std::string& title, const std::string& root);

// The explorer's heading, controls and canvas area, for gallery.js's setupExplorer.
std::string explorer_controls();

// A JSON value as a page shows it: a string as itself, anything else as JSON.
std::string text_of(const nlohmann::ordered_json& value);

}  // namespace vitscope::gallery
