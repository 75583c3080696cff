#include "demo_frame.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include <opencv2/imgproc.hpp>
#include <xtensor/xmath.hpp>

#include "vitscope/error.hpp"
#include "vitscope/image/analysis.hpp"
#include "vitscope/image/attention_views.hpp"
#include "vitscope/image/predictions.hpp"
#include "vitscope/image/preprocess.hpp"

namespace vitscope::demo {

namespace {

using image::HeadFusion;

const cv::Scalar kBackground(40, 40, 40);
const cv::Scalar kWhite(255, 255, 255);
const cv::Scalar kSelected(0, 220, 255);  // BGR: yellow
constexpr int kTileGap = 4;
constexpr int kCaptionHeight = 18;
constexpr double kFontScale = 0.45;
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;

cv::Mat resized(const cv::Mat& bgr, cv::Size size) {
  if (bgr.size() == size) return bgr;
  cv::Mat out;
  const bool shrinking = size.width < bgr.cols;
  cv::resize(bgr, out, size, 0, 0, shrinking ? cv::INTER_AREA : cv::INTER_NEAREST);
  return out;
}

void put_text(cv::Mat& frame, const std::string& text, cv::Point at) {
  cv::putText(frame, text, at, kFont, kFontScale, kWhite, 1, cv::LINE_AA);
}

// Original-image x (or y) where token boundary k (in patches) lies.
double boundary(std::size_t k, int patch, int resized_len, int original_len) {
  const double r = std::min<double>(static_cast<double>(k) * patch, resized_len);
  return r * original_len / resized_len;
}

// The CLS view (t, only offered for models with a CLS token, which are encoder-only): the CLS
// token's attention instead of the selected token's.
bool cls_view(const DemoImage& image, const DemoState& state) {
  return state.cls && state.kind == ModuleKind::encoder_self && image.attention.num_prefix_tokens > 0;
}

std::string detection_caption(const image::Detection& d) {
  return "query " + std::to_string(d.query) + ": " + d.name + " " + std::to_string(std::lround(100 * d.score)) + "%";
}

// Each detection's box and label on the image box, the selected one thicker and yellow.
void draw_detections(cv::Mat& shown, const DemoImage& image, const DemoState& state, const ImageBox& box) {
  for (std::size_t k = image.detections.size(); k-- > 0;) {  // the best on top
    const image::Detection& d = image.detections[k];
    const bool selected = state.detection == k;
    const cv::Rect r(cv::Point(static_cast<int>(std::lround(d.box.x * box.scale)),
                               static_cast<int>(std::lround(d.box.y * box.scale))),
                     cv::Point(static_cast<int>(std::lround(d.box.br().x * box.scale)),
                               static_cast<int>(std::lround(d.box.br().y * box.scale))));
    const cv::Scalar colour = selected ? kSelected : kWhite;
    cv::rectangle(shown, r, cv::Scalar(0, 0, 0), selected ? 4 : 3, cv::LINE_AA);
    cv::rectangle(shown, r, colour, selected ? 2 : 1, cv::LINE_AA);
    const std::string label = d.name + " " + std::to_string(std::lround(100 * d.score)) + "%";
    const cv::Point at(std::max(r.x, 0) + 2, std::max(r.y, 12) - 3);
    cv::putText(shown, label, at, kFont, kFontScale, cv::Scalar(0, 0, 0), 3, cv::LINE_AA);
    cv::putText(shown, label, at, kFont, kFontScale, colour, 1, cv::LINE_AA);
  }
}

// The image box: the image with its token grid, the selected token outlined, the point marked.
cv::Mat image_panel(const DemoImage& image, const DemoState& state, const ImageBox& box) {
  cv::Mat shown = resized(image::to_bgr8(image.rgb), box.rect.size());
  const auto [h, w] = image.attention.grid;
  const int p = image.layout.patch_size;
  const cv::Size original = image.rgb.size();
  const cv::Size r = image.layout.resized;
  const auto x_at = [&](std::size_t j) {
    return static_cast<int>(std::lround(boundary(j, p, r.width, original.width) * box.scale));
  };
  const auto y_at = [&](std::size_t i) {
    return static_cast<int>(std::lround(boundary(i, p, r.height, original.height) * box.scale));
  };
  cv::Mat lines = shown.clone();
  for (std::size_t j = 1; j < w; ++j) {
    cv::line(lines, {x_at(j), 0}, {x_at(j), shown.rows - 1}, kWhite, 1);
  }
  for (std::size_t i = 1; i < h; ++i) {
    cv::line(lines, {0, y_at(i)}, {shown.cols - 1, y_at(i)}, kWhite, 1);
  }
  cv::addWeighted(shown, 0.6, lines, 0.4, 0.0, shown);
  draw_detections(shown, image, state, box);
  if (cls_view(image, state)) return shown;  // the CLS token has no place on the image
  const auto [ti, tj] = token_cell(state.token, image);
  cv::rectangle(shown, cv::Point(x_at(tj), y_at(ti)),
                cv::Point(x_at(tj + 1) - 1, y_at(ti + 1) - 1), kSelected, 2);
  const cv::Point centre(static_cast<int>(std::lround(state.point.x * box.scale)),
                         static_cast<int>(std::lround(state.point.y * box.scale)));
  cv::circle(shown, centre, 4, cv::Scalar(0, 0, 0), 3, cv::LINE_AA);
  cv::circle(shown, centre, 4, kWhite, 1, cv::LINE_AA);
  return shown;
}

// Tiles of equal size laid out to fill the right box as fully as the image's aspect allows.
cv::Mat tile_panel(const std::vector<Tile>& tiles, const DemoImage& image,
                   const std::vector<cv::Point2d>& points) {
  cv::Mat panel(kPanel, kRightWidth, CV_8UC3, kBackground);
  const int n = static_cast<int>(tiles.size());
  const double aspect = image.rgb.cols / static_cast<double>(image.rgb.rows);
  int best_cols = 1;
  double best_width = 0;
  for (int cols = 1; cols <= n; ++cols) {
    const int rows = (n + cols - 1) / cols;
    const double by_width = (kRightWidth - (cols - 1) * kTileGap) / static_cast<double>(cols);
    const double by_height =
        ((kPanel - (rows - 1) * kTileGap) / static_cast<double>(rows) - kCaptionHeight) * aspect;
    const double width = std::min(by_width, by_height);
    if (width > best_width) {
      best_width = width;
      best_cols = cols;
    }
  }
  const cv::Size tile_size(std::max(1, static_cast<int>(std::floor(best_width))),
                           std::max(1, static_cast<int>(std::floor(best_width / aspect))));
  const image::AttentionCanvas canvas = image::attention_canvas(
      image.rgb, image.layout, image.attention.grid, std::max(tile_size.width, tile_size.height));
  for (int k = 0; k < n; ++k) {
    const int x = (k % best_cols) * (tile_size.width + kTileGap);
    const int y = (k / best_cols) * (tile_size.height + kCaptionHeight + kTileGap);
    const cv::Mat tile = resized(image::attention_overlay(tiles[k].map, canvas, points), tile_size);
    tile.copyTo(panel(cv::Rect(x, y + kCaptionHeight, tile_size.width, tile_size.height)));
    put_text(panel, tiles[k].caption, {x + 2, y + kCaptionHeight - 5});
  }
  return panel;
}

// One picture (CV_8UC3 BGR) fitted into the right box under a caption.
cv::Mat picture_panel(const cv::Mat& bgr, const std::string& caption) {
  cv::Mat panel(kPanel, kRightWidth, CV_8UC3, kBackground);
  const double scale = std::min(kRightWidth / static_cast<double>(bgr.cols),
                                (kPanel - kCaptionHeight) / static_cast<double>(bgr.rows));
  const cv::Size size(std::max(1, static_cast<int>(bgr.cols * scale)),
                      std::max(1, static_cast<int>(bgr.rows * scale)));
  resized(bgr, size).copyTo(panel(cv::Rect(0, kCaptionHeight, size.width, size.height)));
  put_text(panel, caption, {2, kCaptionHeight - 5});
  return panel;
}

std::string cell_text(const std::array<std::size_t, 2>& cell) {
  return "(" + std::to_string(cell[0]) + "," + std::to_string(cell[1]) + ")";
}

const Tensor3& module_weights(const DemoImage& image, const nn::ModulePath& path) {
  const auto found = image.attention.modules.find(path);
  if (found == image.attention.modules.end()) {
    throw Error("bad_demo_state", "the forward pass did not capture " + path.str());
  }
  return found->second;
}

std::vector<Tile> attention_tiles(const DemoImage& image, const DemoState& state, const ModelShape& shape) {
  const nn::ModulePath path = image::module_path(state.kind, state.layer);
  const Tensor3& weights = module_weights(image, path);
  const std::string fusion = to_string(state.fusion) + " of " + std::to_string(weights.shape(0)) + " heads";
  std::vector<Tile> tiles;
  if (cls_view(image, state)) {
    // DINO's view: row 0 of the module over all tokens, the prefix columns dropped: (nh, S).
    const auto found = image.attention.with_prefix.find(path);
    if (found == image.attention.with_prefix.end()) {
      throw Error("bad_demo_state", "the forward pass did not capture " + path.str() + " with its CLS token");
    }
    const Tensor2 cls = image::cls_attention(found->second, image.attention.num_prefix_tokens);
    Tensor3 rows = Tensor3::from_shape({cls.shape(0), std::size_t{1}, cls.shape(1)});
    std::copy(cls.begin(), cls.end(), rows.begin());
    tiles.push_back({image::key_map(image::fuse_heads(rows, state.fusion), 0, image.attention.grid),
                     "CLS " + fusion});
    for (std::size_t k = 0; k < cls.shape(0); ++k) {
      tiles.push_back({image::key_map(cls, k, image.attention.grid), "CLS head " + std::to_string(k)});
    }
    return tiles;
  }
  const Tensor2 fused = image::fuse_heads(weights, state.fusion);
  if (state.kind == ModuleKind::cross && shape.queries && state.detection) {
    // The selected detection's query: fused, then every head, as DETR's notebook shows a detection.
    const image::Detection& d = image.detections.at(*state.detection);
    tiles.push_back({image::key_map(fused, d.query, image.attention.grid), detection_caption(d) + ", " + fusion});
    for (std::size_t k = 0; k < weights.shape(0); ++k) {
      tiles.push_back({image::key_map(weights, k, d.query, image.attention.grid), "head " + std::to_string(k)});
    }
    return tiles;
  }
  if (state.kind == ModuleKind::cross && shape.queries) {
    // Learned queries: each query's fused map over the image tokens; the click does not apply.
    const std::size_t count = std::min(weights.shape(1), kMaxQueryTiles);
    for (std::size_t q = 0; q < count; ++q) {
      tiles.push_back({image::key_map(fused, q, image.attention.grid),
                       "query " + std::to_string(q) + " " + fusion});
    }
    return tiles;
  }
  tiles.push_back({image::key_map(fused, state.token, image.attention.grid), fusion});
  for (std::size_t k = 0; k < weights.shape(0); ++k) {
    tiles.push_back({image::key_map(weights, k, state.token, image.attention.grid),
                     "head " + std::to_string(k)});
  }
  return tiles;
}

std::vector<Tile> rollout_tiles(const DemoImage& image, const DemoState& state, const ModelShape& shape) {
  const image::ImageRollout rollout =
      image::image_rollout(image.attention, state.fusion, kRolloutDiscard, shape.cls, {state.token});
  std::vector<Tile> tiles;
  if (cls_view(image, state) && shape.cls) {
    tiles.push_back({rollout.cls, "rollout of the CLS token"});
  } else {
    tiles.push_back({image::key_map(rollout.points, 0, image.attention.grid),
                     "rollout of token " + cell_text(token_cell(state.token, image))});
  }
  // The mean of all rows: what the tokens draw on together.
  tiles.push_back({rollout.mean, "rollout, all tokens"});
  return tiles;
}

// The point marked on the tiles: the selected one, none for the CLS token or learned queries.
std::vector<cv::Point2d> marked_points(const DemoImage& image, const DemoState& state, const ModelShape& shape) {
  if (cls_view(image, state) && shape.cls) return {};
  if (state.view == View::attention && state.kind == ModuleKind::cross && shape.queries) return {};
  return {state.point};
}

cv::Mat right_panel(const DemoImage& image, const DemoState& state, const ModelShape& shape,
                    const std::vector<std::string>& class_names) {
  switch (state.view) {
    case View::attention:
    case View::rollout:
      return tile_panel(view_tiles(image, state, shape), image, marked_points(image, state, shape));
    case View::pca:
      return picture_panel(image::pca_view(image.features, image.rgb, image.layout),
                           "PCA of the output features (first 3 components as RGB)");
    case View::classes:
      return picture_panel(
          image::class_overlay_view(image.logits, image.rgb, image.layout, class_names),
          "class per token");
  }
  return tile_panel(view_tiles(image, state, shape), image, marked_points(image, state, shape));
}

}  // namespace

std::vector<Tile> view_tiles(const DemoImage& image, const DemoState& state, const ModelShape& shape) {
  switch (state.view) {
    case View::attention: return attention_tiles(image, state, shape);
    case View::rollout: return rollout_tiles(image, state, shape);
    case View::pca:
    case View::classes: return {};
  }
  return {};
}

std::string to_string(View view) {
  switch (view) {
    case View::attention: return "attention";
    case View::rollout: return "rollout";
    case View::pca: return "pca";
    case View::classes: return "classes";
  }
  return "";
}

ModelShape ModelShape::of(const image::ImageModel& model) {
  ModelShape shape;
  shape.encoder_layers = model.transformer.encoder.layers.size();
  shape.decoder_layers = model.transformer.decoder.layers.size();
  shape.queries = model.options.target == image::Target::queries;
  // Query models classify queries, not tokens, and a CLS classifier the image: there is no
  // per-token class map to overlay.
  shape.head = model.options.num_classes > 0 && !shape.queries &&
               model.options.head_pool == image::HeadPool::tokens;
  shape.cls = model.options.cls_token;
  shape.detector = model.options.detector;
  shape.heads = static_cast<std::size_t>(model.options.transformer.nhead);
  return shape;
}

std::vector<ModuleKind> ModelShape::kinds() const {
  std::vector<ModuleKind> kinds;
  if (encoder_layers > 0) kinds.push_back(ModuleKind::encoder_self);
  if (decoder_layers > 0 && !queries) kinds.push_back(ModuleKind::decoder_self);
  if (decoder_layers > 0) kinds.push_back(ModuleKind::cross);
  return kinds;
}

std::size_t ModelShape::layers(ModuleKind kind) const {
  return kind == ModuleKind::encoder_self ? encoder_layers : decoder_layers;
}

DemoState initial_state(const ModelShape& shape) {
  DemoState state;
  const std::vector<ModuleKind> kinds = shape.kinds();
  if (!kinds.empty()) state.kind = shape.detector ? ModuleKind::cross : kinds.front();
  if (shape.detector) state.layer = shape.decoder_layers - 1;
  return state;
}

Action apply_key(DemoState& state, int key, const ModelShape& shape) {
  const std::size_t layers = shape.layers(state.kind);
  switch (key) {
    case 'l':
    case 'L':
      if (layers == 0) return Action::none;
      state.layer = key == 'l' ? (state.layer + 1) % layers : (state.layer + layers - 1) % layers;
      state.view = View::attention;
      return Action::redraw;
    case 'h':
      state.fusion = state.fusion == HeadFusion::mean  ? HeadFusion::max
                     : state.fusion == HeadFusion::max ? HeadFusion::min
                                                       : HeadFusion::mean;
      return Action::redraw;
    case 'm': {
      const std::vector<ModuleKind> kinds = shape.kinds();
      if (kinds.empty()) return Action::none;
      const auto at = std::find(kinds.begin(), kinds.end(), state.kind);
      const std::size_t next = at == kinds.end() ? 0 : (at - kinds.begin() + 1) % kinds.size();
      state.kind = kinds[next];
      state.layer = std::min(state.layer, shape.layers(state.kind) - 1);
      state.view = View::attention;
      return Action::redraw;
    }
    case 'r':
      if (shape.encoder_layers == 0) return Action::none;
      state.view = state.view == View::rollout ? View::attention : View::rollout;
      return Action::redraw;
    case 'f':
      state.view = state.view == View::pca ? View::attention : View::pca;
      return Action::redraw;
    case 'c':
      if (!shape.head) return Action::none;
      state.view = state.view == View::classes ? View::attention : View::classes;
      return Action::redraw;
    case 't':
      // CLS models are encoder-only: the CLS token's row of the encoder layer, or of the rollout.
      if (!shape.cls || shape.encoder_layers == 0) return Action::none;
      state.cls = !state.cls;
      state.kind = ModuleKind::encoder_self;
      state.layer = std::min(state.layer, shape.encoder_layers - 1);
      if (state.view != View::rollout) state.view = View::attention;
      return Action::redraw;
    case 'n': return Action::next_image;
    case 'p': return Action::previous_image;
    case 's': return Action::save;
    case 'q':
    case 27: return Action::quit;
    default: return Action::none;
  }
}

std::string key_help() {
  return "  click  select the token under the cursor; on a detector's box, that detection: its\n"
         "         query's cross-attention, fused and per head\n"
         "  l / L  next / previous layer\n"
         "  h      head fusion: mean -> max -> min\n"
         "  m      module: encoder self / decoder self / decoder cross-attention (those the model has)\n"
         "  r      rollout through the encoder (discard ratio 0.9) on / off\n"
         "  f      PCA feature view on / off\n"
         "  c      class overlay on / off (models with a per-token head)\n"
         "  t      the CLS token's attention (and rollout) instead of the selected token's on / off\n"
         "         (models with a CLS token); a click goes back to the token under it\n"
         "  n / p  next / previous image\n"
         "  s      save the view as PNG\n"
         "  q, Esc quit\n";
}

DemoImage analyse_image(const image::ImageModel& model, const cv::Mat& rgb, const std::string& name) {
  // The same pipeline as vitscope run, every module captured (kept_layers: all).
  image::AnalysisRequest request;
  request.score_threshold = kScoreThreshold;
  // A click may pick any token's row: whole maps when they fit, else the same rows from scores.
  request.whole_maps = true;
  request.max_memory_bytes = image::default_memory_budget();
  const image::AnalysisPlan plan = image::plan_analysis(model, request);
  const auto start = std::chrono::steady_clock::now();
  image::BatchAnalysis batch = image::analyse(model, {rgb}, model.preprocess_options(), plan);
  image::ImageAnalysis& analysis = batch.images.at(0);
  DemoImage out;
  out.inference_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  out.name = name;
  out.original = analysis.original;
  out.rgb = analysis.picture;
  out.layout = analysis.layout;
  out.attention = std::move(analysis.attention);
  out.features = std::move(analysis.features);
  out.logits = std::move(analysis.logits);
  out.queries = analysis.queries.size() > 0 ? analysis.queries.shape(0) : 0;
  out.detections = std::move(analysis.detections);
  if (analysis.class_logits.size() > 0) {
    const image::ClassScore top = image::top_classes(analysis.class_logits.data(), analysis.class_logits.size(),
                                                     model.options.class_names, 1).at(0);
    out.top_class = top.name + " (" + std::to_string(std::lround(100 * top.probability)) + "%)";
  }
  return out;
}

std::array<std::size_t, 2> token_cell(std::size_t token, const DemoImage& image) {
  const std::size_t w = image.attention.grid[1];
  return {token / w, token % w};
}

void select_centre(DemoState& state, const DemoImage& image) {
  const auto [h, w] = image.attention.grid;
  const std::size_t i = h / 2;
  const std::size_t j = w / 2;
  state.token = i * w + j;
  const int p = image.layout.patch_size;
  const cv::Size r = image.layout.resized;
  const cv::Size o = image.rgb.size();
  state.point = {(boundary(j, p, r.width, o.width) + boundary(j + 1, p, r.width, o.width)) / 2,
                 (boundary(i, p, r.height, o.height) + boundary(i + 1, p, r.height, o.height)) / 2};
  state.detection = image.detections.empty() ? std::nullopt : std::optional<std::size_t>(0);
}

ImageBox image_box(cv::Size image) {
  ImageBox box;
  box.scale = std::min(kPanel / static_cast<double>(image.width),
                       kPanel / static_cast<double>(image.height));
  box.rect = cv::Rect(0, 0,
                      std::clamp(static_cast<int>(std::lround(image.width * box.scale)), 1, kPanel),
                      std::clamp(static_cast<int>(std::lround(image.height * box.scale)), 1, kPanel));
  return box;
}

bool click(DemoState& state, cv::Point frame_pixel, const DemoImage& image) {
  const ImageBox box = image_box(image.rgb.size());
  if (!box.rect.contains(frame_pixel)) return false;
  const cv::Point2d pixel((frame_pixel.x - box.rect.x + 0.5) / box.scale,
                          (frame_pixel.y - box.rect.y + 0.5) / box.scale);
  state.point = pixel;
  state.token = image::token_at(pixel, image.rgb.size(), image.layout, image.attention.grid);
  state.cls = false;
  state.detection.reset();
  for (std::size_t k = 0; k < image.detections.size(); ++k) {
    const cv::Rect2d& b = image.detections[k].box;
    if (!b.contains(pixel)) continue;
    if (!state.detection || b.area() < image.detections[*state.detection].box.area()) state.detection = k;
  }
  if (state.detection) {
    state.kind = ModuleKind::cross;
    state.view = View::attention;
  }
  return true;
}

std::string status_line(const DemoImage& image, const DemoState& state, const ModelShape& shape) {
  std::string view;
  switch (state.view) {
    case View::attention:
      view = to_string(state.kind) + " layer " + std::to_string(state.layer + 1) + "/" +
             std::to_string(shape.layers(state.kind)) + " | " + to_string(state.fusion) + " of " +
             std::to_string(shape.heads) + " heads";
      break;
    case View::rollout:
      view = "rollout of " + std::to_string(shape.encoder_layers) + " encoder layers | " +
             to_string(state.fusion) + " of heads, discard 0.9";
      break;
    case View::pca: view = "PCA of the output features"; break;
    case View::classes: view = "class overlay"; break;
  }
  char ms[32];
  std::snprintf(ms, sizeof ms, "%.1f ms", image.inference_ms);
  std::string name = image.name;
  if (image.rgb.size() != image.original) {
    name += " (" + std::to_string(image.rgb.cols) + "x" + std::to_string(image.rgb.rows) + " crop)";
  }
  if (!image.top_class.empty()) name += " | top " + image.top_class;
  const bool detection = state.detection && state.kind == ModuleKind::cross && state.view == View::attention;
  const std::string token = detection ? detection_caption(image.detections.at(*state.detection))
                            : cls_view(image, state) && shape.cls
                                ? "CLS token"
                                : "token " + cell_text(token_cell(state.token, image));
  return name + " | " + view + " | " + token + " | inference " + ms;
}

cv::Mat compose_frame(const DemoImage& image, const DemoState& state, const ModelShape& shape,
                      const std::vector<std::string>& class_names) {
  const std::size_t tokens = image.attention.grid[0] * image.attention.grid[1];
  if (image.rgb.empty() || tokens == 0 || state.token >= tokens) {
    throw Error("bad_demo_state", "no image or token to draw");
  }
  cv::Mat frame(kFrameSize, CV_8UC3, kBackground);
  const ImageBox box = image_box(image.rgb.size());
  image_panel(image, state, box).copyTo(frame(box.rect));
  right_panel(image, state, shape, class_names)
      .copyTo(frame(cv::Rect(kPanel + kGap, 0, kRightWidth, kPanel)));
  frame(cv::Rect(0, kPanel, kFrameSize.width, kStatusHeight)).setTo(cv::Scalar(0, 0, 0));
  put_text(frame, status_line(image, state, shape), {6, kPanel + 18});
  put_text(frame,
           std::string(shape.detector ? "click: box or token   " : "click: token   ") + "l/L layer   h fusion   m module   r rollout   " +
               (shape.cls ? "t CLS   " : "") + "f PCA   c classes   n/p image   s save   q quit",
           {6, kPanel + 40});
  return frame;
}

}  // namespace vitscope::demo
