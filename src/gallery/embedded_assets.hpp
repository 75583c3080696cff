#pragma once
// The files of assets/gallery/, embedded at build time (src/gallery/CMakeLists.txt): the run
// writes them from the executable, so it needs no source tree.

#include <string_view>

namespace vitscope::gallery::embedded {

extern const std::string_view gallery_js;              // gallery.js without TURBO
extern const std::string_view gallery_css;
extern const std::string_view page_head_html;          // {{title}}, {{root}}
extern const std::string_view explorer_controls_html;  // {{thumbnail}}

}  // namespace vitscope::gallery::embedded
