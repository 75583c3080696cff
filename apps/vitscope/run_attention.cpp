#include "run_attention.hpp"

#include <cmath>
#include <sstream>

#include "commands.hpp"
#include "vitscope/error.hpp"

namespace vitscope::cli {

namespace {

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

image::ReferencePoint parse_point(const std::string& point) {
  const std::vector<std::string> xy = split(point, ',');
  if (xy.size() != 2) throw UsageError("--points " + point + ": expected x,y");
  image::ReferencePoint p;
  bool fraction_y = false;
  p.x = parse_coordinate(xy[0], point, p.fraction);
  p.y = parse_coordinate(xy[1], point, fraction_y);
  if (p.fraction != fraction_y) {
    throw UsageError("--points " + point + ": write both as pixels or both as fractions");
  }
  return p;
}

// --attention-layers: all, none or indices N,M.
std::optional<std::vector<std::size_t>> kept_layers(const std::string& layers) {
  if (layers == "all") return std::nullopt;
  std::vector<std::size_t> indices;
  if (layers == "none") return indices;
  for (const std::string& index : split(layers, ',')) {
    std::size_t used = 0;
    unsigned long value = 0;
    try {
      value = std::stoul(index, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != index.size() || index[0] == '-') {
      throw UsageError("--attention-layers " + layers + ": no layer " + index);
    }
    indices.push_back(value);
  }
  return indices;
}

image::AnalysisRequest analysis_request(const std::string& layer, const AttentionOptions& o) {
  image::AnalysisRequest request;
  request.layer = layer;
  for (const std::string& point : o.points) request.points.push_back(parse_point(point));
  if (o.views != "none") {
    for (const std::string& view : split(o.views, ',')) {
      try {
        request.views.push_back(image::parse_attention_view(view));
      } catch (const Error& e) {
        throw UsageError("--attention-views " + view + ": " + e.what());
      }
    }
  }
  request.attention_layer = o.layer;
  request.view_stack = o.module == "decoder" ? nn::Stack::decoder : nn::Stack::encoder;
  request.kept_layers = kept_layers(o.layers);
  request.fusion = image::parse_head_fusion(o.head_fusion);
  request.discard_ratio = o.discard_ratio;
  request.threshold = o.threshold;
  request.top_queries = static_cast<std::size_t>(o.top_queries);
  request.score_threshold = o.score_threshold;
  request.whole_maps = o.save;  // --save-attention writes them whenever they fit
  request.max_memory_bytes = o.max_memory_mb > 0 ? static_cast<std::size_t>(o.max_memory_mb) << 20
                                                 : image::default_memory_budget();
  return request;
}

std::string setting(const std::optional<nn::ModulePath>& path) { return path ? path->str() : ""; }

std::vector<std::string> paths(const std::vector<nn::ModulePath>& modules) {
  std::vector<std::string> out;
  for (const nn::ModulePath& path : modules) out.push_back(path.str());
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
  command.add_option("--score-threshold", o.score_threshold,
                     "detector: the detections are the queries whose best real class has at least "
                     "this probability (detections.json, detections.png, the cross view)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  command.add_flag("--save-attention", o.save,
                   "also write the captured maps as attention/<module>.npy (nh,L,S) per image");
  command.add_option("--max-memory-mb", o.max_memory_mb,
                     "memory a batch may take (default: a quarter of physical memory); over it, "
                     "attention is kept as rows (no whole maps), and a batch that still does not "
                     "fit fails with its estimate")
      ->check(CLI::Range(1, 1 << 30));
}

image::AnalysisPlan plan_run(const image::ImageModel& model, const std::string& layer,
                             const AttentionOptions& o) {
  const image::AnalysisRequest request = analysis_request(layer, o);
  try {
    return image::plan_analysis(model, request);
  } catch (const Error& e) {
    // The library names what does not fit; the option that asked for it is the user's.
    const std::string option = e.code() == "bad_layer"             ? "--layer " + layer
                               : e.code() == "bad_attention_layer" ? "--attention-layer " + std::to_string(o.layer)
                               : e.code() == "bad_view_stack"      ? "--attention-module " + o.module
                               : e.code() == "bad_kept_layers"     ? "--attention-layers " + o.layers
                                                                   : "";
    if (option.empty()) throw;
    throw UsageError(option + ": " + e.what());
  }
}

nlohmann::ordered_json attention_settings(const image::AnalysisPlan& plan, bool save) {
  const image::AnalysisRequest& r = plan.request;
  std::vector<std::string> views;
  for (const image::AttentionView view : r.views) views.push_back(image::to_string(view));
  nlohmann::ordered_json points = nlohmann::ordered_json::array();
  for (const image::ReferencePoint& p : plan.points) {
    points.push_back({p.x, p.y, p.fraction ? "fraction" : "pixel"});
  }
  return {{"views", views},
          {"capture", paths(plan.capture)},
          {"layers", paths(plan.kept)},
          {"points", points},
          {"head_fusion", image::to_string(r.fusion)},
          {"discard_ratio", r.discard_ratio},
          {"threshold", r.threshold},
          {"top_queries", r.top_queries},
          {"score_threshold", r.score_threshold},
          {"view_layer", setting(plan.view_module)},
          {"cross_module", setting(plan.cross_module)},
          {"cls_module", setting(plan.cls_module)},
          {"save", save}};
}

}  // namespace vitscope::cli
