#pragma once
// Text made safe for the gallery's pages: HTML escaping, relative URLs, JSON inside <script>.

#include <string>

#include <nlohmann/json.hpp>

namespace vitscope::gallery {

// &, <, >, " and ' as entities: safe in element text and in quoted attribute values.
std::string html_escape(const std::string& text);

// A '/'-separated relative path as a URL: every byte but unreserved ones and '/' escaped.
std::string url_path(const std::string& path);

// From an image's folder DIR/<input>/ back to DIR: "../" for each level of input.
std::string url_to_root(const std::string& input);

// JSON inside <script>: "</" would end the element early. Bytes that are not UTF-8 are replaced.
std::string script_json(const nlohmann::json& json);

}  // namespace vitscope::gallery
