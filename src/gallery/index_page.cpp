#include "vitscope/gallery/index_page.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <sstream>
#include <string>

#include "page_parts.hpp"
#include "shared_files.hpp"
#include "vitscope/gallery/file_names.hpp"
#include "vitscope/gallery/html.hpp"
#include "vitscope/io/atomic_file.hpp"

namespace vitscope::gallery {

void write_index(const std::filesystem::path& out_dir, const nlohmann::ordered_json& summary) {
  using Json = nlohmann::ordered_json;
  write_shared_files(out_dir);
  std::map<std::string, int> counts;
  for (const Json& image : summary.at("images")) counts[image.at("status").get<std::string>()] += 1;
  std::ostringstream page;
  page << page_head("vitscope gallery", "") << "<body>\n<h1>vitscope gallery</h1>\n"
       << "<p class=\"summary\">model " << html_escape(text_of(summary.at("model"))) << " · "
       << summary.at("images").size() << " inputs:";
  for (const auto& [status, count] : counts) page << " " << count << " " << html_escape(status);
  page << "</p>\n<input id=\"filter\" placeholder=\"filter by name or status\">\n"
       << "<div class=\"cards\">\n";
  for (const Json& image : summary.at("images")) {
    const std::string input = image.at("input").get<std::string>();
    const std::string status = image.at("status").get<std::string>();
    const Json& outputs = image.at("outputs");
    std::string search = input + " " + status;
    std::transform(search.begin(), search.end(), search.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    page << "<div class=\"card\" data-search=\"" << html_escape(search) << "\">";
    const bool has_page = outputs.contains("page") && outputs.contains("thumbnail");
    if (has_page) {
      page << "<a href=\"" << url_path(outputs.at("page").get<std::string>())
           << "\"><img loading=\"lazy\" src=\"" << url_path(outputs.at("thumbnail").get<std::string>())
           << "\" alt=\"" << html_escape(input) << "\"></a>";
    }
    page << "<div class=\"name\">" << html_escape(input) << "</div><div class=\"status-"
         << html_escape(status) << "\">" << html_escape(status) << "</div>";
    if (!image.at("error").is_null()) {
      page << "<div class=\"error\">" << html_escape(image.at("error").get<std::string>()) << "</div>";
    }
    page << "</div>\n";
  }
  page << "</div>\n<script src=\"gallery.js\"></script>\n</body>\n</html>\n";
  io::write_file_atomically((out_dir / kPageFile).string(), page.str());
}

}  // namespace vitscope::gallery
