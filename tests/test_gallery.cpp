// The attention views and the offline gallery of `vitscope run`: every view can be asked for, every
// page references only files that exist and nothing online, and headless Chromium renders them.

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "cli_support.hpp"
#include "vitscope/io/npy.hpp"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using vitscope::test::quote;
using vitscope::test::read_bytes;
using vitscope::test::run_cli;
using vitscope::test::TempDir;

// Small images of several shapes, one in a subfolder with a space and '#' in its name.
void write_photos(const TempDir& dir) {
  fs::create_directories(dir.path() / "photos" / "sub dir#1");
  const std::vector<std::pair<std::string, cv::Size>> photos = {
      {"photos/wide.png", {96, 40}}, {"photos/sub dir#1/tall.png", {30, 70}}, {"photos/square.png", {48, 48}}};
  for (const auto& [name, size] : photos) {
    cv::Mat image(size, CV_8UC3, cv::Scalar(40, 120, 200));
    cv::circle(image, {size.width / 2, size.height / 2}, std::min(size.width, size.height) / 3,
               cv::Scalar(250, 250, 20), cv::FILLED);
    REQUIRE(cv::imwrite(dir.file(name), image));
  }
  std::ofstream(dir.file("photos/notes.txt")) << "not an image";
}

// The seeded random model: 2 encoder and 2 decoder layers, 4 heads, a head, token targets.
const std::string kRandomModel = std::string(VITSCOPE_ASSETS_DIR) + "/models/random.safetensors";

std::string run_args(const TempDir& dir, const std::string& extra = "") {
  return "run " + quote(dir.file("photos")) + " --out " + quote(dir.file("out")) + " --model " +
         quote(kRandomModel) + " --size 64 --threads 1" + extra;
}

json read_json(const fs::path& path) { return json::parse(read_bytes(path.string())); }

std::string url_decode(const std::string& url) {
  std::string out;
  for (std::size_t i = 0; i < url.size(); ++i) {
    if (url[i] == '%' && i + 2 < url.size()) {
      out += static_cast<char>(std::stoi(url.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += url[i];
    }
  }
  return out;
}

// Every src= and href= of an HTML file, resolved against its folder; each must exist.
std::size_t check_references(const fs::path& page) {
  const std::string html = read_bytes(page.string());
  CHECK(html.find("http://") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  const std::regex reference(R"re((?:src|href)="([^"]*)")re");
  std::size_t count = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), reference);
       it != std::sregex_iterator(); ++it) {
    const fs::path target = page.parent_path() / url_decode((*it)[1].str());
    INFO(page << " references " << (*it)[1].str());
    CHECK(fs::is_regular_file(target));
    ++count;
  }
  return count;
}

std::string find_chromium() {
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    const std::string probe = std::string("command -v ") + name + " >/dev/null 2>&1";
    if (std::system(probe.c_str()) == 0) return name;
  }
  return "";
}

std::string file_url(const fs::path& path) {
  std::string url = "file://";
  for (unsigned char c : path.string()) {
    if (std::isalnum(c) || std::string("/-_.~").find(static_cast<char>(c)) != std::string::npos) {
      url += static_cast<char>(c);
    } else {
      char escaped[4];
      std::snprintf(escaped, sizeof escaped, "%%%02X", c);
      url += escaped;
    }
  }
  return url;
}

// The DOM after the page's scripts ran, from headless Chromium with no network.
std::string rendered_dom(const std::string& chromium, const fs::path& page, const TempDir& dir) {
  const std::string dom = dir.file("dom.html");
  const std::string command =
      chromium + " --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir=" +
      quote(dir.file("chromium-profile")) + " --virtual-time-budget=5000 --dump-dom " +
      quote(file_url(page)) + " >" + quote(dom) + " 2>/dev/null";
  INFO(command);
  REQUIRE(std::system(command.c_str()) == 0);
  return read_bytes(dom);
}

int rendered_count(const std::string& dom) {
  std::smatch match;
  if (!std::regex_search(dom, match, std::regex(R"re(data-rendered="(\d+)")re"))) return -1;
  return std::stoi(match[1].str());
}

}  // namespace

TEST_CASE("gallery: every page references only files that exist, and nothing online", "[gallery]") {
  TempDir dir;
  write_photos(dir);
  const auto run = run_cli(run_args(dir));
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  const fs::path out = dir.file("out");
  const json summary = read_json(out / "summary.json");
  CHECK(check_references(out / "index.html") >= 5);
  for (const char* file : {"gallery.js", "gallery.css"}) {
    const std::string text = read_bytes((out / file).string());
    CHECK(!text.empty());
    CHECK(text.find("http") == std::string::npos);
  }
  std::size_t pages = 0;
  for (const json& image : summary.at("images")) {
    if (image.at("status") != "ok") continue;
    const json& outputs = image.at("outputs");
    for (const std::string view : {"points", "heads", "masks", "rollout", "cross"}) {
      INFO(image.at("input") << " " << view);
      REQUIRE(outputs.contains("attention_" + view));
      const cv::Mat png = cv::imread((out / outputs.at("attention_" + view).get<std::string>()).string());
      CHECK_FALSE(png.empty());
    }
    CHECK(check_references(out / outputs.at("page").get<std::string>()) >= 8);
    ++pages;
  }
  CHECK(pages == 3);

  const std::string chromium = find_chromium();
  if (chromium.empty()) {
    WARN("chromium is not installed: the pages were checked by parsing only");
    return;
  }
  CHECK(rendered_count(rendered_dom(chromium, out / "index.html", dir)) == 4);
  const fs::path tall = out / "photos" / "sub dir#1" / "tall.png" / "index.html";
  REQUIRE(fs::exists(tall));
  const std::string dom = rendered_dom(chromium, tall, dir);
  INFO(dom.substr(0, 2000));
  CHECK(rendered_count(dom) == 1);
  CHECK(dom.find("<canvas") != std::string::npos);
}

TEST_CASE("run: each attention view on its own, and the raw maps", "[gallery]") {
  TempDir dir;
  write_photos(dir);
  const auto run = run_cli(run_args(
      dir, " --attention-views points,rollout --points 10,5 0.5,0.5 --save-attention "
           "--head-fusion max --discard-ratio 0.5 --threshold 0.3 --attention-layers 0"));
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  const fs::path out = dir.file("out");
  const json summary = read_json(out / "summary.json");
  for (const json& image : summary.at("images")) {
    if (image.at("status") != "ok") continue;
    const json& outputs = image.at("outputs");
    INFO(outputs.dump());
    std::set<std::string> kinds;
    for (const auto& [kind, path] : outputs.items()) kinds.insert(kind);
    // The rollout needs every encoder layer and the points view the last, but only the asked
    // layer 0 is saved and explored.
    CHECK(kinds == std::set<std::string>{"features", "pca", "channels", "token_norm", "classes",
                                         "attention_points", "attention_rollout",
                                         "attention:encoder.layers.0.self_attn",
                                         "attention:decoder.layers.0.self_attn",
                                         "attention:decoder.layers.0.multihead_attn",
                                         "thumbnail", "page"});
    const fs::path folder = (out / outputs.at("features").get<std::string>()).parent_path();
    CHECK(fs::exists(folder / "attention" / "encoder.layers.0.self_attn.npy"));
    CHECK_FALSE(fs::exists(folder / "attention" / "encoder.layers.1.self_attn.npy"));
    const std::string page = read_bytes((out / outputs.at("page").get<std::string>()).string());
    CHECK(page.find("\"name\":\"encoder.layers.0.self_attn\"") != std::string::npos);
    CHECK(page.find("\"name\":\"encoder.layers.1.self_attn\"") == std::string::npos);
    CHECK(page.find("\"name\":\"decoder.layers.1.") == std::string::npos);
    const std::size_t S = image.at("grid")[0].get<std::size_t>() * image.at("grid")[1].get<std::size_t>();
    const auto maps = vitscope::io::read_npy(
        (out / outputs.at("attention:encoder.layers.0.self_attn").get<std::string>()).string());
    CHECK(maps.shape == vitscope::Shape{4, S, S});
    // Two points, one tile each.
    const cv::Mat points = cv::imread((out / outputs.at("attention_points").get<std::string>()).string());
    REQUIRE_FALSE(points.empty());
    const std::size_t width = image.at("size")[0];
    CHECK(points.cols == static_cast<int>(2 * width + 4));
  }
}

TEST_CASE("run: --attention-module decoder draws the decoder's self-attention over the tokens",
          "[gallery]") {
  TempDir dir;
  write_photos(dir);
  const std::string views =
      " --attention-views points,heads --attention-layers none --save-attention --points 10,5";
  const auto decoder =
      run_cli(run_args(dir, views + " --attention-module decoder --attention-layer 0"));
  INFO(decoder.err);
  REQUIRE(decoder.exit_code == 0);
  const fs::path out = dir.file("out");
  const json summary = read_json(out / "summary.json");
  json image;
  for (const json& entry : summary.at("images")) {
    if (entry.at("status") == "ok") image = entry;
  }
  REQUIRE(image.contains("outputs"));
  std::set<std::string> kinds;
  for (const auto& [kind, path] : image.at("outputs").items()) kinds.insert(kind);
  // The view's layer is captured to draw it, but --attention-layers none saves no map.
  CHECK(kinds.count("attention_points") == 1);
  CHECK(kinds.count("attention:decoder.layers.0.self_attn") == 0);
  CHECK(kinds.count("attention:encoder.layers.1.self_attn") == 0);
  const std::string points =
      (out / image.at("outputs").at("attention_points").get<std::string>()).string();
  const cv::Mat from_decoder = cv::imread(points);

  REQUIRE(run_cli(run_args(dir, views + " --overwrite")).exit_code == 0);
  const cv::Mat from_encoder = cv::imread(points);
  REQUIRE(from_decoder.size() == from_encoder.size());
  CHECK(cv::norm(from_decoder, from_encoder, cv::NORM_INF) > 0);  // another module, another map
}

TEST_CASE("run: no attention asked for, no attention written", "[gallery]") {
  TempDir dir;
  write_photos(dir);
  const auto run = run_cli(run_args(dir, " --attention-views none --attention-layers none"));
  REQUIRE(run.exit_code == 0);
  const fs::path out = dir.file("out");
  const json summary = read_json(out / "summary.json");
  std::size_t pages = 0;
  for (const json& image : summary.at("images")) {
    if (image.at("status") != "ok") continue;
    ++pages;
    for (const auto& [kind, path] : image.at("outputs").items()) {
      CHECK(kind.rfind("attention", 0) == std::string::npos);
    }
    const std::string page = read_bytes((out / image.at("outputs").at("page").get<std::string>()).string());
    CHECK(page.find("id=\"maps\"") == std::string::npos);
  }
  CHECK(pages == 3);
}

TEST_CASE("run: attention usage errors exit 2 and name the option", "[gallery]") {
  TempDir dir;
  write_photos(dir);
  for (const std::string extra :
       {" --points 1,2,3", " --points 1.5,0.2", " --points 0.5,7", " --points a,b",
        " --attention-views points,bogus", " --attention-layer 9", " --attention-layers 7",
        " --head-fusion median", " --discard-ratio 1.5", " --threshold 0",
        " --attention-module bogus"}) {
    const auto run = run_cli(run_args(dir, extra));
    INFO(extra << ": " << run.err);
    CHECK(run.exit_code == 2);
    const std::string option = extra.substr(1, extra.find(' ', 1) - 1);
    CHECK(run.err.find(option) != std::string::npos);
  }
  // Decoder self-attention over the tokens needs a decoder whose targets are the tokens.
  for (const auto& [fixture, reason] :
       {std::pair<std::string, std::string>{"c_none_encoder_only_shrink_gray", "no decoder"},
        {"b_learned_attention_queries_prenorm", "learned queries"}}) {
    const std::string model =
        std::string(VITSCOPE_IMAGE_FIXTURES_DIR) + "/" + fixture + "/model.safetensors";
    const auto run =
        run_cli("run " + quote(dir.file("photos")) + " --out " + quote(dir.file("out")) +
                " --model " + quote(model) + " --attention-module decoder");
    INFO(fixture << ": " << run.err);
    CHECK(run.exit_code == 2);
    CHECK(run.err.find("--attention-module decoder: ") != std::string::npos);
    CHECK(run.err.find(reason) != std::string::npos);
  }
}

namespace {

// The explorer's data of an image page: the JSON in its <script id="maps">.
json page_maps(const std::string& html) {
  const std::string open = "<script id=\"maps\" type=\"application/json\">";
  const std::size_t begin = html.find(open);
  REQUIRE(begin != std::string::npos);
  const std::size_t end = html.find("</script>", begin);
  REQUIRE(end != std::string::npos);
  std::string text = html.substr(begin + open.size(), end - begin - open.size());
  for (std::size_t at; (at = text.find("<\\/")) != std::string::npos;) text.replace(at, 3, "</");
  return json::parse(text);
}

// A data-NAME="N" attribute of the rendered body, -1 when absent.
int rendered_attribute(const std::string& dom, const std::string& name) {
  std::smatch match;
  if (!std::regex_search(dom, match, std::regex("data-" + name + "=\"(\\d+)\""))) return -1;
  return std::stoi(match[1].str());
}

}  // namespace

TEST_CASE("gallery of a CLS-token model: the explorer's CLS rows drawn on the crop with no marker",
          "[gallery]") {
  // torchvision ViT (CLS token, 2 layers, 3 heads), shorter-crop 256 -> 224: 14x14 tokens.
  TempDir dir;
  fs::create_directories(dir.file("photos"));
  fs::copy_file(std::string(VITSCOPE_ASSETS_DIR) + "/images/chelsea.jpg", dir.file("photos/chelsea.jpg"));
  const std::string model = std::string(VITSCOPE_VIT_FIXTURES_DIR) + "/torchvision_p16_224/model.safetensors";
  const auto run = run_cli("run " + quote(dir.file("photos")) + " --out " + quote(dir.file("out")) +
                           " --model " + quote(model) + " --threads 1");
  INFO(run.err);
  REQUIRE(run.exit_code == 0);
  const json summary = read_json(dir.file("out") + "/summary.json");
  REQUIRE(summary.at("images").size() == 1);
  const fs::path page = dir.file("out") + "/" + summary.at("images")[0].at("outputs").at("page").get<std::string>();
  const fs::path folder = page.parent_path();
  const std::string html = read_bytes(page.string());
  CHECK(check_references(page) >= 8);
  for (const std::string view : {"attention_cls.png", "attention_cls_masks.png"}) {
    INFO(view);
    CHECK(html.find("<img loading=\"lazy\" src=\"" + view + "\"") != std::string::npos);  // a figure
  }

  const json maps = page_maps(html);
  CHECK(maps.at("size") == json::array({224, 224}));  // the crop the model saw
  CHECK(maps.at("resized") == json::array({224, 224}));
  CHECK(maps.at("grid") == json::array({14, 14}));
  REQUIRE(maps.at("modules").size() == 2);
  for (const json& module : maps.at("modules")) {
    INFO(module.at("name"));
    CHECK(module.at("kind") == "encoder self-attention");
    const json& rows = module.at("rows");
    REQUIRE(rows.size() == 5);  // the CLS token, then the 4 default points
    CHECK(rows[0].at("label") == "CLS token");
    CHECK(rows[0].at("point").is_null());
    REQUIRE(rows[0].at("heads").size() == 3);
    for (const json& head : rows[0].at("heads")) {
      CHECK(head.at("q").get<std::string>().size() == 4 * ((196 + 2) / 3));  // base64 of 196 bytes
      CHECK(head.at("max").get<double>() > 0);
    }
    for (std::size_t i = 1; i < rows.size(); ++i) CHECK(rows[i].at("point").is_array());
  }
  const json& rollout = maps.at("rollout");
  REQUIRE(rollout.size() == 6);  // the CLS token, 4 points, all tokens
  CHECK(rollout.front().at("label") == "CLS token");
  CHECK(rollout.front().at("point").is_null());
  CHECK(rollout.back().at("label") == "all tokens");
  const cv::Mat thumbnail = cv::imread((folder / "thumb.jpg").string());
  CHECK(thumbnail.size() == cv::Size(224, 224));

  const std::string chromium = find_chromium();
  if (chromium.empty()) {
    WARN("chromium is not installed: the page was checked by parsing only");
    return;
  }
  // As it opens: the first encoder layer's CLS row, fused, no point marked.
  const std::string dom = rendered_dom(chromium, page, dir);
  INFO(dom.substr(0, 2000));
  CHECK(rendered_attribute(dom, "rendered") == 1);
  CHECK(rendered_attribute(dom, "marked") == 0);
  CHECK(dom.find("CLS token, mean of heads") != std::string::npos);
  // A copy of the page that picks rows by their labels once the explorer is set up: the rollout's
  // CLS row marks nothing, a point's row marks its point; a JS error leaves data-checked unset.
  const std::string script = R"(<script>
window.addEventListener("load", () => {
  const kind = document.getElementById("kind"), point = document.getElementById("point");
  const pick = label => { point.value = [...point.options].find(o => o.textContent === label).value; point.onchange(); };
  kind.value = "rollout"; kind.onchange();
  pick("CLS token");
  const cls = [document.body.dataset.rendered, document.body.dataset.marked];
  pick("point 1");
  const one = [document.body.dataset.rendered, document.body.dataset.marked];
  document.body.dataset.checked = [...cls, ...one].join("");
});
</script>
</body>)";
  std::string copy = html;
  copy.replace(copy.rfind("</body>"), 7, script);
  const fs::path probe = folder / "probe.html";
  std::ofstream(probe) << copy;
  const std::string probed = rendered_dom(chromium, probe, dir);
  INFO(probed.substr(0, 2000));
  CHECK(rendered_attribute(probed, "checked") == 1011);  // CLS: 1 map, 0 marks; point 1: 1 map, 1 mark
  CHECK(probed.find("rollout: CLS token") == std::string::npos);  // the last drawn is point 1
  CHECK(probed.find("rollout: point 1") != std::string::npos);
}
