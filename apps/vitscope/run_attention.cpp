#include "run_attention.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include <xtensor/xview.hpp>

#include "commands.hpp"
#include "vitscope/gallery/explorer.hpp"
#include "vitscope/image/attention_views.hpp"
#include "vitscope/image/image_file.hpp"
#include "vitscope/io/npy_tensors.hpp"
#include "vitscope/nn/parallel.hpp"

namespace vitscope::cli {

namespace {

using Json = nlohmann::json;

const std::vector<std::string> kViews = {"points", "heads", "masks", "rollout", "cross", "cls", "cls_masks"};
// Spread over the image when no --points are given, as DETR's notebook picks a few by hand.
const std::vector<cv::Point2d> kDefaultFractions = {{0.3, 0.3}, {0.7, 0.3}, {0.3, 0.7}, {0.7, 0.7}};

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, separator);) parts.push_back(part);
  return parts;
}

double parse_coordinate(const std::string& text, const std::string& point, bool& fraction) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || !std::isfinite(value) || value < 0) {
    throw UsageError("--points " + point + ": expected x,y as pixels or fractions (0.5,0.25)");
  }
  fraction = text.find('.') != std::string::npos;
  if (fraction && value > 1) {
    throw UsageError("--points " + point + ": a fraction must be at most 1");
  }
  return value;
}

// -1 is the last of `count` layers, as Python indexes.
std::size_t layer_index(int layer, std::size_t count, const std::string& stack) {
  const long n = static_cast<long>(count);
  const long index = layer < 0 ? n + layer : layer;
  if (index < 0 || index >= n) {
    throw UsageError("--attention-layer " + std::to_string(layer) + ": the " + stack + " has " +
                     std::to_string(count) + " layers");
  }
  return static_cast<std::size_t>(index);
}

bool is_background(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower == "background" || lower == "no_object" || lower == "no-object";
}

struct QueryScore {
  std::size_t query = 0;
  double score = 0;
  std::string caption;
};

// Learned queries ranked as DETR's notebook keeps them: by the probability of their best class
// that is not background; without a head, in order.
std::vector<QueryScore> ranked_queries(const image::ImageModelOutput& out, std::size_t b,
                                       const std::vector<std::string>& names, std::size_t keep) {
  const std::size_t Q = out.query_outputs.shape(1);
  std::vector<QueryScore> queries(Q);
  for (std::size_t q = 0; q < Q; ++q) {
    queries[q].query = q;
    queries[q].caption = "query " + std::to_string(q);
    if (out.query_logits.size() == 0) continue;
    const std::size_t K = out.query_logits.shape(2);
    double top = -INFINITY, total = 0;
    for (std::size_t k = 0; k < K; ++k) top = std::max(top, double(out.query_logits(b, q, k)));
    std::vector<double> p(K);
    for (std::size_t k = 0; k < K; ++k) total += p[k] = std::exp(out.query_logits(b, q, k) - top);
    std::size_t best = K;
    for (std::size_t k = 0; k < K; ++k) {
      const std::string name = k < names.size() ? names[k] : "class " + std::to_string(k);
      if (is_background(name)) continue;
      if (best == K || p[k] > p[best]) best = k;
    }
    if (best == K) continue;
    queries[q].score = p[best] / total;
    const std::string name = best < names.size() ? names[best] : "class " + std::to_string(best);
    queries[q].caption += ": " + name + " " + std::to_string(std::lround(100 * queries[q].score)) + "%";
  }
  std::stable_sort(queries.begin(), queries.end(),
                   [](const QueryScore& a, const QueryScore& b) { return a.score > b.score; });
  queries.resize(std::min(keep, Q));
  return queries;
}

// A plan's optional module as its settings record it: the path, or "" when there is none.
std::string setting(const std::optional<nn::ModulePath>& path) { return path ? path->str() : ""; }

std::vector<std::string> settings_paths(const std::vector<nn::ModulePath>& paths) {
  std::vector<std::string> out;
  for (const nn::ModulePath& path : paths) out.push_back(path.str());
  return out;
}

}  // namespace

void add_attention_options(CLI::App& command, AttentionOptions& o) {
  command.add_option("--points", o.points,
                     "reference points x,y for the attention views: pixels, or fractions of the "
                     "image when written with a '.' (default: 0.3,0.3 0.7,0.3 0.3,0.7 0.7,0.7)")
      ->type_name("X,Y");
  command.add_option("--attention-views", o.views,
                     "attention PNGs per image, comma-separated: points, heads, masks, rollout, "
                     "cross, cls, cls_masks (the last two for models with a CLS token); or none")
      ->capture_default_str();
  command.add_option("--attention-layers", o.layers,
                     "layers whose attention the gallery shows and --save-attention writes: all, "
                     "none, or indices N,M")
      ->capture_default_str();
  command.add_option("--attention-layer", o.layer,
                     "the layer of the points, heads, masks and cross views (-1: the last)")
      ->capture_default_str();
  command
      .add_option("--attention-module", o.module,
                  "whose self-attention the points, heads and masks views show: encoder, or "
                  "decoder (models whose decoder targets are the image's tokens)")
      ->capture_default_str()
      ->check(CLI::IsMember({"encoder", "decoder"}));
  command.add_option("--head-fusion", o.head_fusion, "how heads combine: mean, max or min")
      ->capture_default_str()
      ->check(CLI::IsMember({"mean", "max", "min"}));
  command.add_option("--discard-ratio", o.discard_ratio,
                     "rollout: share of the lowest attention entries dropped per layer")
      ->capture_default_str()
      ->check(CLI::Range(0.0f, 0.99f));
  command.add_option("--threshold", o.threshold,
                     "masks: share of attention mass the kept tokens hold")
      ->capture_default_str()
      ->check(CLI::Range(0.01f, 1.0f));
  command.add_option("--top-queries", o.top_queries,
                     "cross view of a learned-query model: how many queries, best first")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  command.add_flag("--save-attention", o.save,
                   "also write the captured maps as attention/<module>.npy (nh,L,S) per image");
}

AttentionPlan::AttentionPlan(const AttentionOptions& options, image::ImageModel& model)
    : options_(options), model_(model), fusion_(image::parse_head_fusion(options.head_fusion)) {
  for (const std::string& point : options.points) {
    const std::vector<std::string> xy = split(point, ',');
    if (xy.size() != 2) throw UsageError("--points " + point + ": expected x,y");
    Point p;
    bool fraction_y = false;
    p.x = parse_coordinate(xy[0], point, p.fraction);
    p.y = parse_coordinate(xy[1], point, fraction_y);
    if (p.fraction != fraction_y) {
      throw UsageError("--points " + point + ": write both as pixels or both as fractions");
    }
    points_.push_back(p);
  }
  if (points_.empty()) {
    for (const cv::Point2d& f : kDefaultFractions) points_.push_back({f.x, f.y, true});
  }
  if (options.views != "none") {
    for (const std::string& view : split(options.views, ',')) {
      if (std::find(kViews.begin(), kViews.end(), view) == kViews.end()) {
        throw UsageError("--attention-views " + view +
                         ": expected points, heads, masks, rollout, cross, cls, cls_masks or none");
      }
      views_.push_back(view);
    }
  }

  const std::vector<nn::ModulePath> modules = model.attention_modules();
  const std::size_t encoder_layers = model.transformer.encoder.layers.size();
  const std::size_t decoder_layers = model.transformer.decoder.layers.size();
  const auto add = [&](const nn::ModulePath& path) {
    if (std::find(capture_.begin(), capture_.end(), path) == capture_.end()) capture_.push_back(path);
  };
  if (wants("points") || wants("heads") || wants("masks")) {
    const bool decoder = options.module == "decoder";
    if (decoder && decoder_layers == 0) {
      throw UsageError("--attention-module decoder: the model has no decoder");
    }
    if (decoder && model.options.target != image::Target::tokens) {
      throw UsageError(
          "--attention-module decoder: the decoder's targets are learned queries, "
          "not the image's tokens");
    }
    const std::size_t layer =
        layer_index(options.layer, decoder ? decoder_layers : encoder_layers, options.module);
    view_layer_ = decoder ? nn::ModulePath::decoder_self_attn(layer) : nn::ModulePath::encoder_self_attn(layer);
    add(*view_layer_);
  }
  if (wants("rollout")) {
    for (std::size_t i = 0; i < encoder_layers; ++i) add(nn::ModulePath::encoder_self_attn(i));
  }
  if ((wants("cls") || wants("cls_masks")) && model.options.cls_token) {
    cls_module_ = nn::ModulePath::encoder_self_attn(layer_index(options.layer, encoder_layers, "encoder"));
    add(*cls_module_);
  }
  if (wants("cross") && decoder_layers > 0) {
    cross_module_ =
        nn::ModulePath::decoder_multihead_attn(layer_index(options.layer, decoder_layers, "decoder"));
    add(*cross_module_);
  }
  // --attention-layers alone decides what is saved and explored; the views' layers above are
  // captured for drawing only.
  std::vector<nn::ModulePath> asked;
  if (options.layers == "all") {
    asked = modules;
  } else if (options.layers != "none") {
    for (const std::string& index : split(options.layers, ',')) {
      bool found = false;
      for (const nn::ModulePath& path : modules) {
        if (std::to_string(path.layer) == index) asked.push_back(path), found = true;
      }
      if (!found) throw UsageError("--attention-layers " + options.layers + ": no layer " + index);
    }
  }
  for (const nn::ModulePath& path : asked) add(path);
  // Keep the model's order, so pages and .npy files list modules as the model runs them.
  const auto in_model_order = [&](const std::vector<nn::ModulePath>& paths) {
    std::vector<nn::ModulePath> ordered;
    for (const nn::ModulePath& path : modules) {
      if (std::find(paths.begin(), paths.end(), path) != paths.end()) ordered.push_back(path);
    }
    return ordered;
  };
  capture_ = in_model_order(capture_);
  layers_ = in_model_order(asked);
}

bool AttentionPlan::wants(const std::string& view) const {
  return std::find(views_.begin(), views_.end(), view) != views_.end();
}

std::vector<std::pair<std::string, std::string>> AttentionPlan::files() const {
  std::vector<std::pair<std::string, std::string>> files;
  for (const std::string& view : views_) {
    if (view == "cross" && !cross_module_) continue;
    if ((view == "cls" || view == "cls_masks") && !cls_module_) continue;
    files.emplace_back("attention_" + view, "attention_" + view + ".png");
  }
  if (options_.save) {
    for (const nn::ModulePath& path : layers_) {
      files.emplace_back("attention:" + path.str(), "attention/" + path.str() + ".npy");
    }
  }
  return files;
}

nlohmann::ordered_json AttentionPlan::settings() const {
  nlohmann::ordered_json points = nlohmann::ordered_json::array();
  for (const Point& p : points_) points.push_back({p.x, p.y, p.fraction ? "fraction" : "pixel"});
  return {{"views", views_},      {"capture", settings_paths(capture_)},      {"layers", settings_paths(layers_)},
          {"points", points},     {"head_fusion", options_.head_fusion},
          {"discard_ratio", options_.discard_ratio}, {"threshold", options_.threshold},
          {"top_queries", options_.top_queries},      {"view_layer", setting(view_layer_)},
          {"cross_module", setting(cross_module_)},            {"cls_module", setting(cls_module_)},            {"save", options_.save}};
}

std::vector<cv::Point2d> AttentionPlan::pixels(cv::Size image) const {
  std::vector<cv::Point2d> out;
  for (const Point& p : points_) {
    const double x = p.fraction ? p.x * (image.width - 1) : p.x;
    const double y = p.fraction ? p.y * (image.height - 1) : p.y;
    out.emplace_back(std::min(x, image.width - 1.0), std::min(y, image.height - 1.0));
  }
  return out;
}

Json AttentionPlan::write(const ImageResult& result, const OutputFile& output) const {
  if (capture_.empty()) return Json();
  const image::ImageAttention attention = image::image_attention(result.output, result.b);
  const image::AttentionCanvas canvas{
      result.rgb, {result.resized, static_cast<int>(model_.options.patch_size)}, attention.grid};
  const std::vector<cv::Point2d> points = pixels(result.rgb.size());
  std::vector<std::size_t> point_tokens;
  for (const cv::Point2d& p : points) {
    point_tokens.push_back(image::token_at(p, result.rgb.size(), canvas.layout, canvas.grid));
  }
  const bool queries = result.output.query_outputs.size() > 0;
  const std::vector<QueryScore> top =
      queries ? ranked_queries(result.output, result.b, model_.options.class_names,
                               static_cast<std::size_t>(options_.top_queries))
              : std::vector<QueryScore>{};

  // 1. PNG views, drawn here and encoded together below.
  std::vector<std::pair<std::filesystem::path, cv::Mat>> pngs;
  const auto png = [&](const std::string& view, const cv::Mat& bgr) {
    pngs.emplace_back(output("attention_" + view, "attention_" + view + ".png"), bgr);
  };
  if (view_layer_) {
    const Tensor3& weights = attention.modules.at(*view_layer_);
    if (wants("points")) png("points", image::points_view(weights, points, fusion_, canvas));
    if (wants("heads")) png("heads", image::heads_view(weights, points, fusion_, canvas));
    if (wants("masks")) {
      png("masks", image::masks_view(weights, points, fusion_, options_.threshold, canvas));
    }
  }
  const std::size_t X = attention.num_prefix_tokens;
  if (cls_module_) {
    const Tensor2 cls = image::cls_attention(attention.with_prefix.at(*cls_module_), X);
    if (wants("cls")) png("cls", image::cls_heads_view(cls, fusion_, canvas));
    if (wants("cls_masks")) png("cls_masks", image::cls_masks_view(cls, fusion_, options_.threshold, canvas));
  }
  image::ImageRollout rollout;
  if (wants("rollout")) {
    rollout = image::image_rollout(attention, fusion_, options_.discard_ratio, model_.options.cls_token);
    png("rollout", image::rollout_view(rollout.patches, points, canvas, rollout.cls));
  }
  if (cross_module_) {
    std::vector<image::CrossRow> rows;
    if (queries) {
      for (const QueryScore& q : top) rows.push_back({q.query, q.caption, {}});
    } else {
      for (std::size_t i = 0; i < points.size(); ++i) {
        rows.push_back({point_tokens[i], "token under (" + std::to_string(std::lround(points[i].x)) +
                                             ", " + std::to_string(std::lround(points[i].y)) + ")",
                        {points[i]}});
      }
    }
    png("cross", image::cross_view(attention.modules.at(*cross_module_), rows, fusion_, canvas));
  }

  // PNG encoding is most of a run's time: one view per thread.
  parallel_for(pngs.size(), 1, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) image::write_png(pngs[i].first, pngs[i].second);
  });

  // 2. Raw maps.
  if (options_.save) {
    for (const nn::ModulePath& path : layers_) {
      const std::filesystem::path file =
          output("attention:" + path.str(), "attention/" + path.str() + ".npy");
      std::filesystem::create_directories(file.parent_path());
      // With prefix tokens, the whole map: prefix tokens first, as PyTorch's module gives it.
      io::write_npy(file.string(), X > 0 ? attention.with_prefix.at(path) : attention.modules.at(path));
    }
  }

  // 3. The explorer's maps: each --attention-layers module's rows at the points (or top queries).
  Json modules = Json::array();
  for (const nn::ModulePath& path : layers_) {
    const Tensor3& weights = attention.modules.at(path);
    const bool query_rows = queries && path.stack == nn::Stack::decoder;
    if (query_rows && path.kind == nn::AttentionKind::self_attn) continue;  // (Q,Q): no image map
    Json rows = Json::array();
    const auto add_row = [&](std::size_t row, const std::string& label, Json point) {
      Json heads = Json::array();
      for (std::size_t k = 0; k < weights.shape(0); ++k) {
        const Tensor2 head = xt::view(weights, k, xt::all(), xt::all());
        heads.push_back(gallery::encode_map(image::key_map(head, row, attention.grid)));
      }
      rows.push_back({{"label", label}, {"point", point}, {"heads", heads}});
    };
    if (query_rows) {
      for (const QueryScore& q : top) add_row(q.query, q.caption, nullptr);
    } else {
      if (model_.options.cls_token && path.stack == nn::Stack::encoder) {
        const Tensor2 cls = image::cls_attention(attention.with_prefix.at(path), X);
        Json heads = Json::array();
        for (std::size_t k = 0; k < cls.shape(0); ++k) heads.push_back(gallery::encode_map(image::key_map(cls, k, attention.grid)));
        rows.push_back({{"label", "CLS token"}, {"point", nullptr}, {"heads", heads}});
      }
      for (std::size_t i = 0; i < points.size(); ++i) {
        add_row(point_tokens[i], "point " + std::to_string(i + 1), {points[i].x, points[i].y});
      }
    }
    modules.push_back({{"name", path.str()},
                       {"kind", image::to_string(image::module_kind(path))},
                       {"layer", path.layer},
                       {"rows", rows}});
  }
  Json rollout_rows = Json::array();
  if (rollout.cls.size() > 0) {
    rollout_rows.push_back({{"label", "CLS token"}, {"point", nullptr}, {"map", gallery::encode_map(rollout.cls)}});
  }
  if (rollout.patches.size() > 0) {
    for (std::size_t i = 0; i < points.size(); ++i) {
      rollout_rows.push_back({{"label", "point " + std::to_string(i + 1)},
                              {"point", {points[i].x, points[i].y}},
                              {"map", gallery::encode_map(image::key_map(rollout.patches, point_tokens[i], attention.grid))}});
    }
    rollout_rows.push_back({{"label", "all tokens"},
                            {"point", nullptr},
                            {"map", gallery::encode_map(image::mean_key_map(rollout.patches, attention.grid))}});
  }
  if (modules.empty() && rollout_rows.empty()) return Json();  // nothing to explore: no explorer
  return {{"size", {result.rgb.cols, result.rgb.rows}},
          {"resized", {result.resized.width, result.resized.height}},
          {"patch", model_.options.patch_size},
          {"grid", attention.grid},
          {"fusion", options_.head_fusion},
          {"modules", modules},
          {"rollout", rollout_rows}};
}

}  // namespace vitscope::cli
