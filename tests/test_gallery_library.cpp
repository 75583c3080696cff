// The gallery library on its own: the explorer's map encoding (what gallery.js's decodeMap reads),
// the image page's entries (pictures in their places, the Files list in the caller's order) and
// the index's pages.

#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "support.hpp"
#include "vitscope/gallery/explorer.hpp"
#include "vitscope/gallery/image_page.hpp"
#include "vitscope/gallery/index_page.hpp"

namespace {

using vitscope::Tensor2;
using vitscope::gallery::encode_map;
using vitscope::gallery::PageFile;
using vitscope::test::read_bytes;
using vitscope::test::TempDir;

}  // namespace

TEST_CASE("encode_map: each value as round(255 * value / max), base64 with padding", "[gallery]") {
  // 0, 64 (63.75), 128 (127.5 rounds away from zero), 255
  const Tensor2 map = {{0.0f, 1.0f}, {2.0f, 4.0f}};
  const nlohmann::json encoded = encode_map(map);
  CHECK(encoded.size() == 2);
  CHECK(encoded.at("max").get<float>() == 4.0f);
  CHECK(encoded.at("q") == "AECA/w==");
  CHECK(encode_map(Tensor2{{1.0f, 1.0f, 1.0f}}).at("q") == "////");
  CHECK(encode_map(Tensor2{{3.0f}, {-3.0f}}).at("q") == "/wA=");  // negatives clamp to 0
}

TEST_CASE("encode_map: a map with no positive value encodes as zeros", "[gallery]") {
  const nlohmann::json zeros = encode_map(Tensor2{{0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f}});
  CHECK(zeros.at("max").get<float>() == 0.0f);
  CHECK(zeros.at("q") == "AAAAAAAA");
  const nlohmann::json negative = encode_map(Tensor2{{-1.0f, -2.0f}});
  CHECK(negative.at("max").get<float>() == -1.0f);
  CHECK(negative.at("q") == "AAA=");
}

TEST_CASE("image page: pictures by their place, files in the caller's order", "[gallery]") {
  TempDir dir;
  const std::vector<PageFile> files = {{"features", "features.npy", "", -1},
                                       {"pca", "pca.png", "PCA", 1},
                                       {"classes", "classes.png", "Classes", 0},
                                       {"extra", "extra.png", "Extra", 1}};
  // An input named like a fragment's placeholder stays text.
  const std::string input = "{{title}} & co.png";
  vitscope::gallery::write_image_page(dir.file("page.html"), input, files,
                                      {{"size", "4x2"}}, nlohmann::json());
  const std::string page = read_bytes(dir.file("page.html"));
  INFO(page);
  CHECK(page.find("<title>{{title}} &amp; co.png · vitscope</title>") != std::string::npos);
  const std::size_t classes = page.find("<figcaption>Classes</figcaption>");
  const std::size_t pca = page.find("<figcaption>PCA</figcaption>");
  const std::size_t extra = page.find("<figcaption>Extra</figcaption>");
  CHECK(classes < pca);
  CHECK(pca < extra);
  CHECK(extra != std::string::npos);
  CHECK(page.find("<li><a href=\"features.npy\">features.npy</a> (features)</li>\n"
                  "<li><a href=\"pca.png\">pca.png</a> (PCA)</li>\n") != std::string::npos);
  CHECK(page.find("id=\"maps\"") == std::string::npos);  // no maps: no explorer

  vitscope::gallery::write_image_page(dir.file("explorer.html"), "a.png", files, {},
                                      nlohmann::json{{"grid", {1, 2}}});
  const std::string explorer = read_bytes(dir.file("explorer.html"));
  INFO(explorer);
  CHECK(explorer.find("<img id=\"explorer-image\" class=\"hidden\" src=\"thumb.jpg\" alt=\"\">") !=
        std::string::npos);
  CHECK(explorer.find("<script id=\"maps\" type=\"application/json\">{\"grid\":[1,2]}</script>") !=
        std::string::npos);
}

TEST_CASE("index: beyond the page size, pages of that many cards linked in order", "[gallery]") {
  TempDir dir;
  nlohmann::ordered_json summary = {{"model", "m.safetensors"}, {"images", nlohmann::json::array()}};
  for (const char* name : {"a.png", "b.png", "c.png", "d.png", "e.png"}) {
    summary["images"].push_back({{"input", name}, {"status", "skipped"}, {"error", nullptr},
                                 {"outputs", nlohmann::json::object()}});
  }
  const auto page = [&](const std::string& name) { return read_bytes(dir.file(name)); };
  const auto has = [](const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  };

  vitscope::gallery::write_index(dir.path(), summary, 2);
  const std::string first = page("index.html"), second = page("index-2.html"),
                    last = page("index-3.html");
  INFO(first << second << last);
  CHECK(has(first, ">a.png<"));
  CHECK(has(first, ">b.png<"));
  CHECK_FALSE(has(first, ">c.png<"));
  CHECK(has(second, ">c.png<"));
  CHECK(has(second, ">d.png<"));
  CHECK(has(last, ">e.png<"));
  CHECK_FALSE(has(last, ">d.png<"));
  for (const std::string* text : {&first, &second, &last}) CHECK(has(*text, "5 inputs: 5 skipped"));
  CHECK(has(first, "page 1 of 3 · <a href=\"index-2.html\">next</a> · "
                   "<a href=\"index-3.html\">last</a> · the filter searches this page</nav>"));
  CHECK(has(second, "page 2 of 3 · <a href=\"index.html\">first</a> · <a href=\"index.html\">"
                    "previous</a> · <a href=\"index-3.html\">next</a> · <a href=\"index-3.html\">"
                    "last</a>"));
  CHECK(has(last, "page 3 of 3 · <a href=\"index.html\">first</a> · <a href=\"index-2.html\">"
                  "previous</a> · the filter"));

  // Written again on one page: no links, and the pages of the longer index are gone.
  vitscope::gallery::write_index(dir.path(), summary, 5);
  CHECK_FALSE(has(page("index.html"), "<nav"));
  CHECK(has(page("index.html"), ">e.png<"));
  CHECK_FALSE(std::filesystem::exists(dir.file("index-2.html")));
  CHECK_FALSE(std::filesystem::exists(dir.file("index-3.html")));
}
