#include "gallery.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

#include <opencv2/imgproc.hpp>

#include "vitscope/image/image_file.hpp"
#include "vitscope/io/atomic_file.hpp"

namespace vitscope::cli {

const char* const kThumbnailFile = "thumb.jpg";
const char* const kPageFile = "index.html";

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

constexpr int kThumbnailSide = 480;

// Titles of the views a page shows, in the order it shows them; other kinds are listed as files.
const std::vector<std::pair<std::string, std::string>> kViewTitles = {
    {"classes", "Class of each token"},
    {"pca", "Features: first three principal components as RGB"},
    {"token_norm", "Features: each token's norm"},
    {"channels", "Features: the strongest channels"},
    {"attention_points", "Encoder self-attention of the token under each point (heads fused)"},
    {"attention_heads", "Head montage: fused, then every head, per point"},
    {"attention_masks", "Masks: the tokens holding the top share of each map's attention"},
    {"attention_cls", "The CLS token's attention over the patches: fused, then every head"},
    {"attention_cls_masks", "Masks: the patches holding the top share of the CLS token's attention"},
    {"attention_rollout",
     "Attention rollout through the encoder: the CLS token's (with one), per point, over all tokens"},
    {"attention_cross", "Decoder cross-attention"},
};

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// A '/'-separated relative path as a URL: every byte but unreserved ones and '/' escaped.
std::string url_path(const std::string& path) {
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      char escaped[4];
      std::snprintf(escaped, sizeof escaped, "%%%02X", c);
      out += escaped;
    }
  }
  return out;
}

// JSON inside <script>: "</" would end the element early.
std::string script_json(const nlohmann::json& json) {
  std::string text = json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '<' && i + 1 < text.size() && text[i + 1] == '/') {
      out += "<\\/";
      ++i;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string text_of(const Json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

// From an image's folder DIR/<input>/ back to DIR.
std::string root_from(const std::string& input) {
  std::string root = "../";
  for (char c : input) {
    if (c == '/') root += "../";
  }
  return root;
}

std::string page_head(const std::string& title, const std::string& root) {
  return "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
         html_escape(title) + "</title>\n<link rel=\"stylesheet\" href=\"" + root +
         "gallery.css\">\n</head>\n";
}

// The turbo colormap as OpenCV draws it, so the explorer matches the PNG views.
std::string turbo_table() {
  cv::Mat ramp(1, 256, CV_8U), colours;
  for (int i = 0; i < 256; ++i) ramp.at<uchar>(0, i) = static_cast<uchar>(i);
  cv::applyColorMap(ramp, colours, cv::COLORMAP_TURBO);
  nlohmann::json table = nlohmann::json::array();
  for (int i = 0; i < 256; ++i) {
    const cv::Vec3b bgr = colours.at<cv::Vec3b>(0, i);
    table.push_back({bgr[2], bgr[1], bgr[0]});
  }
  return table.dump();
}

const char* const kStyle = R"css(body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.3em; margin: 0.3em 0; }
nav, .summary { color: #555; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; margin-top: 1em; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 6px; overflow: hidden; }
.card img { width: 100%; height: 160px; object-fit: contain; background: #eee; }
.card .name { font-weight: 600; word-break: break-all; }
.status-ok { color: #1a7f37; } .status-error { color: #cf222e; } .status-skipped { color: #8a6d00; }
.error { color: #cf222e; font-size: 0.9em; word-break: break-word; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; margin-bottom: 0.3em; }
#controls label { margin-right: 1em; }
#explorer-view { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 0.5em; }
#explorer-view div { font-size: 0.85em; color: #555; }
#explorer-view canvas { display: block; max-width: 480px; border: 1px solid #ddd; }
.hidden { display: none; }
)css";

// The explorer on image pages and the filter on the index; TURBO is prepended by the writer.
const char* const kScript = R"js(
"use strict";
function decodeMap(map) {
  const bytes = atob(map.q);
  const values = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; ++i) values[i] = bytes.charCodeAt(i) / 255 * map.max;
  return values;
}
function fuseHeads(heads, how) {
  const out = Float32Array.from(heads[0]);
  for (let k = 1; k < heads.length; ++k) {
    for (let i = 0; i < out.length; ++i) {
      if (how === "mean") out[i] += heads[k][i];
      else if (how === "max") out[i] = Math.max(out[i], heads[k][i]);
      else out[i] = Math.min(out[i], heads[k][i]);
    }
  }
  if (how === "mean") for (let i = 0; i < out.length; ++i) out[i] /= heads.length;
  return out;
}
// One token map over the image: token (i, j) covers resized pixels [j*p, (j+1)*p), clipped.
function drawMap(data, image, values, point, caption) {
  const box = document.createElement("div");
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const [h, w] = data.grid, p = data.patch;
  const [rw, rh] = data.resized;
  const sx = canvas.width / rw, sy = canvas.height / rh;
  ctx.globalAlpha = 0.6;
  for (let i = 0; i < h; ++i) {
    for (let j = 0; j < w; ++j) {
      const t = hi > lo ? (values[i * w + j] - lo) / (hi - lo) : 0;
      const [r, g, b] = TURBO[Math.round(t * 255)];
      ctx.fillStyle = "rgb(" + r + "," + g + "," + b + ")";
      const x0 = Math.round(j * p * sx), x1 = Math.round(Math.min((j + 1) * p, rw) * sx);
      const y0 = Math.round(i * p * sy), y1 = Math.round(Math.min((i + 1) * p, rh) * sy);
      ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
    }
  }
  ctx.globalAlpha = 1;
  // Rows of no point (the CLS token, all tokens, learned queries) mark nothing.
  if (Array.isArray(point) && point.length === 2) {
    const x = point[0] * canvas.width / data.size[0], y = point[1] * canvas.height / data.size[1];
    ctx.lineWidth = 3; ctx.strokeStyle = "black";
    ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
    ctx.lineWidth = 1; ctx.strokeStyle = "white";
    ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
    box.dataset.marked = "1";
  }
  box.textContent = caption;
  box.appendChild(canvas);
  return box;
}
function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value; o.textContent = text;
  select.appendChild(o);
}
function setupExplorer() {
  const data = JSON.parse(document.getElementById("maps").textContent);
  const image = document.getElementById("explorer-image");
  const kind = document.getElementById("kind"), layer = document.getElementById("layer");
  const head = document.getElementById("head"), point = document.getElementById("point");
  const view = document.getElementById("explorer-view");
  const kinds = [...new Set(data.modules.map(m => m.kind))];
  if (data.rollout.length) kinds.push("rollout");
  kinds.forEach(k => option(kind, k, k));
  function fillLayers() {
    layer.innerHTML = "";
    data.modules.filter(m => m.kind === kind.value).forEach(m => option(layer, m.name, "layer " + m.layer));
    layer.parentElement.classList.toggle("hidden", kind.value === "rollout");
    head.parentElement.classList.toggle("hidden", kind.value === "rollout");
  }
  function current() { return data.modules.find(m => m.name === layer.value); }
  function fillHeads() {
    const keep = head.value;
    head.innerHTML = "";
    ["mean", "max", "min"].forEach(f => option(head, "fused:" + f, "heads fused: " + f));
    option(head, "all", "every head (montage)");
    const module = current();
    if (module) module.rows[0].heads.forEach((_, k) => option(head, "head:" + k, "head " + k));
    head.value = [...head.options].some(o => o.value === keep) ? keep : "fused:" + data.fusion;
  }
  function fillPoints() {
    const keep = point.value;
    point.innerHTML = "";
    const rows = kind.value === "rollout" ? data.rollout : current().rows;
    rows.forEach((r, i) => option(point, i, r.label));
    point.value = keep !== "" && Number(keep) < rows.length ? keep : "0";
  }
  function render() {
    view.innerHTML = "";
    if (kind.value === "rollout") {
      const row = data.rollout[point.value];
      view.appendChild(drawMap(data, image, decodeMap(row.map), row.point, "rollout: " + row.label));
    } else {
      const module = current(), row = module.rows[point.value];
      const heads = row.heads.map(decodeMap);
      const [mode, arg] = head.value.split(":");
      if (mode === "fused") {
        view.appendChild(drawMap(data, image, fuseHeads(heads, arg), row.point, module.name + ", " + row.label + ", " + arg + " of heads"));
      } else if (mode === "head") {
        view.appendChild(drawMap(data, image, heads[arg], row.point, module.name + ", " + row.label + ", head " + arg));
      } else {
        view.appendChild(drawMap(data, image, fuseHeads(heads, data.fusion), row.point, row.label + ", " + data.fusion + " of heads"));
        heads.forEach((h, k) => view.appendChild(drawMap(data, image, h, row.point, row.label + ", head " + k)));
      }
    }
    document.body.dataset.rendered = view.querySelectorAll("canvas").length;
    document.body.dataset.marked = view.querySelectorAll("[data-marked]").length;
  }
  kind.onchange = () => { fillLayers(); fillHeads(); fillPoints(); render(); };
  layer.onchange = () => { fillHeads(); fillPoints(); render(); };
  head.onchange = render;
  point.onchange = render;
  kind.value = kinds[0];
  fillLayers(); fillHeads(); fillPoints(); render();
}
function setupIndex() {
  const filter = document.getElementById("filter");
  const cards = [...document.querySelectorAll(".card")];
  filter.oninput = () => {
    const text = filter.value.toLowerCase();
    cards.forEach(c => c.classList.toggle("hidden", !c.dataset.search.includes(text)));
  };
  document.body.dataset.rendered = cards.length;
}
window.addEventListener("load", () => {
  if (document.getElementById("maps")) setupExplorer();
  else if (document.getElementById("filter")) setupIndex();
});
)js";

std::string title_of(const std::string& kind) {
  for (const auto& [k, title] : kViewTitles) {
    if (k == kind) return title;
  }
  return kind;
}

}  // namespace

void write_thumbnail(const fs::path& path, const cv::Mat& rgb) {
  const double scale = std::min(1.0, kThumbnailSide / static_cast<double>(std::max(rgb.cols, rgb.rows)));
  cv::Mat small = rgb;
  if (scale < 1.0) cv::resize(rgb, small, cv::Size(), scale, scale, cv::INTER_AREA);
  cv::Mat rgb8, bgr;
  small.convertTo(rgb8, CV_8U);
  cv::cvtColor(rgb8, bgr, cv::COLOR_RGB2BGR);
  image::write_jpeg(path, bgr, 85);
}

void write_image_page(const fs::path& path, const std::string& input,
                      const std::vector<std::pair<std::string, std::string>>& outputs,
                      const Json& info, const nlohmann::json& maps) {
  const std::string root = root_from(input);
  std::ostringstream page;
  page << page_head(input + " · vitscope", root) << "<body>\n<nav><a href=\"" << root
       << "index.html\">all images</a> · " << html_escape(input) << "</nav>\n<h1>"
       << html_escape(input) << "</h1>\n<p class=\"summary\">";
  for (const auto& [key, value] : info.items()) {
    page << html_escape(key) << ": " << html_escape(text_of(value)) << " &nbsp; ";
  }
  page << "</p>\n";
  if (!maps.is_null()) {
    page << "<h2>Attention explorer</h2>\n<div id=\"controls\">"
         << "<label>view <select id=\"kind\"></select></label>"
         << "<label>layer <select id=\"layer\"></select></label>"
         << "<label>heads <select id=\"head\"></select></label>"
         << "<label>point <select id=\"point\"></select></label></div>\n"
         << "<img id=\"explorer-image\" class=\"hidden\" src=\"" << kThumbnailFile << "\" alt=\"\">\n"
         << "<div id=\"explorer-view\"></div>\n";
  }
  page << "<h2>Views</h2>\n";
  for (const auto& [kind, title] : kViewTitles) {
    for (const auto& [k, name] : outputs) {
      if (k != kind) continue;
      page << "<figure><figcaption>" << html_escape(title) << "</figcaption><a href=\""
           << url_path(name) << "\"><img loading=\"lazy\" src=\"" << url_path(name)
           << "\" alt=\"" << html_escape(kind) << "\"></a></figure>\n";
    }
  }
  page << "<h2>Files</h2>\n<ul>\n";
  for (const auto& [kind, name] : outputs) {
    page << "<li><a href=\"" << url_path(name) << "\">" << html_escape(name) << "</a> ("
         << html_escape(title_of(kind)) << ")</li>\n";
  }
  page << "</ul>\n";
  if (!maps.is_null()) {
    page << "<script id=\"maps\" type=\"application/json\">" << script_json(maps) << "</script>\n";
  }
  page << "<script src=\"" << root << "gallery.js\"></script>\n</body>\n</html>\n";
  io::write_file_atomically(path.string(), page.str());
}

void write_gallery(const fs::path& out_dir, const Json& summary) {
  io::write_file_atomically((out_dir / "gallery.css").string(), kStyle);
  io::write_file_atomically((out_dir / "gallery.js").string(),
                            "const TURBO = " + turbo_table() + ";\n" + kScript);
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

}  // namespace vitscope::cli
