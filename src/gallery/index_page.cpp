#include "vitscope/gallery/index_page.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <sstream>
#include <string>
#include <system_error>

#include "page_parts.hpp"
#include "shared_files.hpp"
#include "vitscope/gallery/file_names.hpp"
#include "vitscope/gallery/html.hpp"
#include "vitscope/io/atomic_file.hpp"

namespace vitscope::gallery {

namespace {

using Json = nlohmann::ordered_json;

void write_card(std::ostringstream& page, const Json& image) {
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

// Links to the first, previous, next and last of pages; none for a single page.
std::string page_links(std::size_t page, std::size_t pages) {
  if (pages == 1) return "";
  const auto link = [](std::size_t target, const char* text) {
    return " · <a href=\"" + index_page_name(target) + "\">" + text + "</a>";
  };
  std::string nav = "<nav class=\"pages\">page " + std::to_string(page) + " of " +
                    std::to_string(pages);
  if (page > 1) nav += link(1, "first") + link(page - 1, "previous");
  if (page < pages) nav += link(page + 1, "next") + link(pages, "last");
  return nav + " · the filter searches this page</nav>\n";
}

}  // namespace

std::string index_page_name(std::size_t page) {
  return page == 1 ? std::string(kPageFile) : "index-" + std::to_string(page) + ".html";
}

void write_index(const std::filesystem::path& out_dir, const nlohmann::ordered_json& summary,
                 std::size_t page_size) {
  write_shared_files(out_dir);
  const Json& images = summary.at("images");
  std::map<std::string, int> counts;
  for (const Json& image : images) counts[image.at("status").get<std::string>()] += 1;
  std::ostringstream heading;
  heading << "<p class=\"summary\">model " << html_escape(text_of(summary.at("model"))) << " · "
          << images.size() << " inputs:";
  for (const auto& [status, count] : counts) heading << " " << count << " " << html_escape(status);
  heading << "</p>\n";

  const std::size_t pages = std::max<std::size_t>(1, (images.size() + page_size - 1) / page_size);
  for (std::size_t p = 1; p <= pages; ++p) {
    const std::string links = page_links(p, pages);
    std::ostringstream page;
    page << page_head("vitscope gallery", "") << "<body>\n<h1>vitscope gallery</h1>\n"
         << heading.str() << links
         << "<input id=\"filter\" placeholder=\"filter by name or status\">\n"
         << "<div class=\"cards\">\n";
    const std::size_t end = std::min(images.size(), p * page_size);
    for (std::size_t i = (p - 1) * page_size; i < end; ++i) write_card(page, images.at(i));
    page << "</div>\n" << links << "<script src=\"gallery.js\"></script>\n</body>\n</html>\n";
    io::write_file_atomically((out_dir / index_page_name(p)).string(), page.str());
  }
  // An earlier run of more inputs may have left more pages, which would link to these.
  std::error_code ignored;
  std::size_t stale = pages + 1;
  while (std::filesystem::remove(out_dir / index_page_name(stale), ignored)) ++stale;
}

}  // namespace vitscope::gallery
