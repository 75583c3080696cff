#include "vitscope/gallery/image_page.hpp"

#include <algorithm>
#include <sstream>

#include "page_parts.hpp"
#include "vitscope/gallery/html.hpp"
#include "vitscope/io/atomic_file.hpp"

namespace vitscope::gallery {

void write_image_page(const std::filesystem::path& path, const std::string& input,
                      const std::vector<PageFile>& files, const nlohmann::ordered_json& info,
                      const nlohmann::json& maps) {
  const std::string root = url_to_root(input);
  std::ostringstream page;
  page << page_head(input + " · vitscope", root) << "<body>\n<nav><a href=\"" << root
       << "index.html\">all images</a> · " << html_escape(input) << "</nav>\n<h1>"
       << html_escape(input) << "</h1>\n<p class=\"summary\">";
  for (const auto& [key, value] : info.items()) {
    page << html_escape(key) << ": " << html_escape(text_of(value)) << " &nbsp; ";
  }
  page << "</p>\n";
  if (!maps.is_null()) page << explorer_controls();
  page << "<h2>Views</h2>\n";
  std::vector<const PageFile*> pictures;
  for (const PageFile& file : files) {
    if (file.picture >= 0) pictures.push_back(&file);
  }
  std::stable_sort(pictures.begin(), pictures.end(),
                   [](const PageFile* a, const PageFile* b) { return a->picture < b->picture; });
  for (const PageFile* picture : pictures) {
    page << "<figure><figcaption>" << html_escape(picture->title) << "</figcaption><a href=\""
         << url_path(picture->file) << "\"><img loading=\"lazy\" src=\"" << url_path(picture->file)
         << "\" alt=\"" << html_escape(picture->kind) << "\"></a></figure>\n";
  }
  page << "<h2>Files</h2>\n<ul>\n";
  for (const PageFile& file : files) {
    page << "<li><a href=\"" << url_path(file.file) << "\">" << html_escape(file.file) << "</a> ("
         << html_escape(file.picture >= 0 ? file.title : file.kind) << ")</li>\n";
  }
  page << "</ul>\n";
  if (!maps.is_null()) {
    page << "<script id=\"maps\" type=\"application/json\">" << script_json(maps) << "</script>\n";
  }
  page << "<script src=\"" << root << "gallery.js\"></script>\n</body>\n</html>\n";
  io::write_file_atomically(path.string(), page.str());
}

}  // namespace vitscope::gallery
