#include "page_parts.hpp"

#include <map>
#include <stdexcept>
#include <string_view>

#include "embedded_assets.hpp"
#include "vitscope/gallery/file_names.hpp"
#include "vitscope/gallery/html.hpp"

namespace vitscope::gallery {

namespace {

// Each {{name}} of text replaced by its value, in one pass: values are never scanned themselves
// (an input file may be named "{{x}}.png"). A name without a value is a bug in this library.
std::string fill(std::string_view text, const std::map<std::string, std::string>& values) {
  std::string out;
  std::size_t at = 0;
  for (std::size_t open; (open = text.find("{{", at)) != std::string_view::npos;) {
    const std::size_t close = text.find("}}", open);
    if (close == std::string_view::npos) throw std::logic_error("gallery fragment: {{ without }}");
    const std::string name(text.substr(open + 2, close - open - 2));
    const auto value = values.find(name);
    if (value == values.end()) throw std::logic_error("gallery fragment: no value for {{" + name + "}}");
    out.append(text.substr(at, open - at)).append(value->second);
    at = close + 2;
  }
  return out.append(text.substr(at));
}

}  // namespace

std::string page_head(const std::string& title, const std::string& root) {
  return fill(embedded::page_head_html, {{"title", html_escape(title)}, {"root", root}});
}

std::string explorer_controls() {
  return fill(embedded::explorer_controls_html, {{"thumbnail", kThumbnailFile}});
}

std::string text_of(const nlohmann::ordered_json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

}  // namespace vitscope::gallery
