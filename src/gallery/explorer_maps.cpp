#include "vitscope/gallery/explorer.hpp"

namespace vitscope::gallery {

namespace {

using Json = nlohmann::json;

// A module's rows, each with one encoded map per head over the key tokens.
Json module_rows(const image::ImageAnalysis& a, const nn::ModulePath& path, bool cls_row) {
  const std::array<std::size_t, 2> grid = a.attention.grid;
  Json rows = Json::array();
  const auto add_row = [&](const Tensor3& weights, std::size_t row, const std::string& label, Json point) {
    Json heads = Json::array();
    for (std::size_t k = 0; k < weights.shape(0); ++k) {
      heads.push_back(encode_map(image::key_map(weights, k, row, grid)));
    }
    rows.push_back({{"label", label}, {"point", point}, {"heads", heads}});
  };
  const bool query_rows = a.queries.size() > 0 && path.stack == nn::Stack::decoder;
  if (query_rows) {
    const Tensor3& weights = a.attention.modules.at(path);
    for (const image::RankedQuery& q : a.top_queries) add_row(weights, q.query, q.caption, nullptr);
    return rows;
  }
  if (cls_row) {
    const Tensor2 cls = a.attention.cls_rows(path);
    Json heads = Json::array();
    for (std::size_t k = 0; k < cls.shape(0); ++k) heads.push_back(encode_map(image::key_map(cls, k, grid)));
    rows.push_back({{"label", "CLS token"}, {"point", nullptr}, {"heads", heads}});
  }
  const Tensor3 points = a.attention.token_rows(path, a.point_tokens);  // (nh,P,S_i)
  for (std::size_t i = 0; i < a.points.size(); ++i) {
    add_row(points, i, "point " + std::to_string(i + 1), {a.points[i].x, a.points[i].y});
  }
  return rows;
}

Json rollout_rows(const image::ImageAnalysis& a) {
  Json rows = Json::array();
  const image::ImageRollout& rollout = a.rollout;
  if (rollout.cls.size() > 0) {
    rows.push_back({{"label", "CLS token"}, {"point", nullptr}, {"map", encode_map(rollout.cls)}});
  }
  if (rollout.mean.size() == 0) return rows;
  for (std::size_t i = 0; i < a.points.size(); ++i) {
    rows.push_back({{"label", "point " + std::to_string(i + 1)},
                    {"point", {a.points[i].x, a.points[i].y}},
                    {"map", encode_map(image::key_map(rollout.points, i, a.attention.grid))}});
  }
  rows.push_back({{"label", "all tokens"}, {"point", nullptr}, {"map", encode_map(rollout.mean)}});
  return rows;
}

}  // namespace

Json explorer_maps(const image::ImageAnalysis& a, const image::AnalysisPlan& plan,
                   const image::ImageModel& model) {
  if (plan.capture.empty()) return Json();
  Json modules = Json::array();
  for (const nn::ModulePath& path : plan.kept) {
    const bool queries = a.queries.size() > 0 && path.stack == nn::Stack::decoder;
    if (queries && path.kind == nn::AttentionKind::self_attn) continue;  // (Q,Q): no image map
    const bool cls_row = model.options.cls_token && path.stack == nn::Stack::encoder;
    modules.push_back({{"name", path.str()},
                       {"kind", image::to_string(image::module_kind(path))},
                       {"layer", path.layer},
                       {"rows", module_rows(a, path, cls_row)}});
  }
  Json rollout = rollout_rows(a);
  if (modules.empty() && rollout.empty()) return Json();  // nothing to explore: no explorer
  return {{"size", {a.picture.cols, a.picture.rows}},
          {"resized", {a.layout.resized.width, a.layout.resized.height}},
          {"patch", model.options.patch_size},
          {"grid", a.attention.grid},
          {"fusion", image::to_string(plan.request.fusion)},
          {"modules", modules},
          {"rollout", rollout}};
}

}  // namespace vitscope::gallery
