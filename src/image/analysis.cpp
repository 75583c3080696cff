#include "vitscope/image/analysis.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <new>

#include <xtensor/xview.hpp>

#include "rollout_rows.hpp"
#include "vitscope/error.hpp"
#include "vitscope/image/attention_views.hpp"
#include "vitscope/nn/parallel.hpp"

namespace vitscope::image {

namespace {

// Spread over the picture when no points are given, as DETR's notebook picks a few by hand.
const std::vector<ReferencePoint> kDefaultPoints = {
    {0.3, 0.3, true}, {0.7, 0.3, true}, {0.3, 0.7, true}, {0.7, 0.7, true}};

const std::vector<std::pair<AttentionView, const char*>> kViewNames = {
    {AttentionView::points, "points"},   {AttentionView::heads, "heads"},
    {AttentionView::masks, "masks"},     {AttentionView::rollout, "rollout"},
    {AttentionView::cross, "cross"},     {AttentionView::cls, "cls"},
    {AttentionView::cls_masks, "cls_masks"}};

bool asks(const AnalysisRequest& request, AttentionView view) {
  return std::find(request.views.begin(), request.views.end(), view) != request.views.end();
}

// -1 is the last of `count` layers, as Python indexes.
std::size_t layer_index(int layer, std::size_t count, const std::string& stack) {
  const long n = static_cast<long>(count);
  const long index = layer < 0 ? n + layer : layer;
  if (index < 0 || index >= n) {
    throw Error("bad_attention_layer",
                "the " + stack + " has " + std::to_string(count) + " layers");
  }
  return static_cast<std::size_t>(index);
}

std::vector<nn::ModulePath> in_model_order(const std::vector<nn::ModulePath>& modules,
                                           const std::vector<nn::ModulePath>& paths) {
  std::vector<nn::ModulePath> ordered;
  for (const nn::ModulePath& path : modules) {
    if (std::find(paths.begin(), paths.end(), path) != paths.end()) ordered.push_back(path);
  }
  return ordered;
}

bool is_background(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower == "background" || lower == "no_object" || lower == "no-object";
}

std::string class_name(const std::vector<std::string>& names, std::size_t k) {
  return k < names.size() ? names[k] : "class " + std::to_string(k);
}

// Queries (Q,K logits) ranked by the softmax probability of their best non-background class;
// without a head, in order.
std::vector<RankedQuery> rank_queries(std::size_t Q, const Tensor2& logits,
                                      const std::vector<std::string>& names, std::size_t keep) {
  std::vector<RankedQuery> queries(Q);
  for (std::size_t q = 0; q < Q; ++q) {
    queries[q].query = q;
    queries[q].caption = "query " + std::to_string(q);
    if (logits.size() == 0) continue;
    const std::size_t K = logits.shape(1);
    double top = -INFINITY, total = 0;
    for (std::size_t k = 0; k < K; ++k) top = std::max(top, double(logits(q, k)));
    std::vector<double> p(K);
    for (std::size_t k = 0; k < K; ++k) total += p[k] = std::exp(logits(q, k) - top);
    std::size_t best = K;
    for (std::size_t k = 0; k < K; ++k) {
      if (is_background(class_name(names, k))) continue;
      if (best == K || p[k] > p[best]) best = k;
    }
    if (best == K) continue;
    queries[q].score = p[best] / total;
    queries[q].caption += ": " + class_name(names, best) + " " +
                          std::to_string(std::lround(100 * queries[q].score)) + "%";
  }
  std::stable_sort(queries.begin(), queries.end(),
                   [](const RankedQuery& a, const RankedQuery& b) { return a.score > b.score; });
  queries.resize(std::min(keep, Q));
  return queries;
}

std::vector<cv::Point2d> picture_pixels(const std::vector<ReferencePoint>& points, cv::Size picture) {
  std::vector<cv::Point2d> out;
  for (const ReferencePoint& p : points) {
    const double x = p.fraction ? p.x * (picture.width - 1) : p.x;
    const double y = p.fraction ? p.y * (picture.height - 1) : p.y;
    out.emplace_back(std::min(x, picture.width - 1.0), std::min(y, picture.height - 1.0));
  }
  return out;
}

// Image b of a (B,C,h,w) batch output, cropped to its real token grid (h, w).
Tensor3 crop(const Tensor4& t, std::size_t b, std::size_t h, std::size_t w) {
  return xt::view(t, b, xt::all(), xt::range(std::size_t{0}, h), xt::range(std::size_t{0}, w));
}

// The image itself, or where the resize mode cut it, the crop the model saw.
cv::Mat view_picture(const cv::Mat& original, const ImageBatch& batch, std::size_t b,
                     const PreprocessOptions& preprocess) {
  if (batch.crops[b] == cv::Rect({0, 0}, batch.before_crop[b])) return original;
  return resize_and_crop(original, preprocess).rgb;
}

// Image b's outputs and the maps its views draw.
ImageAnalysis image_analysis(const ImageModel& model, const ImageModelOutput& out,
                             const ImageBatch& batch, std::size_t b, const cv::Mat& original,
                             const PreprocessOptions& preprocess, const AnalysisPlan& plan) {
  ImageAnalysis a;
  a.picture = view_picture(original, batch, b, preprocess);
  a.original = original.size();
  a.layout = {batch.resized[b], static_cast<int>(model.options.patch_size)};
  a.grid = out.grids[b];
  const auto [h, w] = a.grid;
  a.features = crop(out.features, b, h, w);
  if (out.logits.size() > 0) a.logits = crop(out.logits, b, h, w);
  if (out.query_outputs.size() > 0) a.queries = xt::view(out.query_outputs, b, xt::all(), xt::all());
  if (out.query_logits.size() > 0) a.query_logits = xt::view(out.query_logits, b, xt::all(), xt::all());
  if (out.query_boxes.size() > 0) {
    a.boxes = xt::view(out.query_boxes, b, xt::all(), xt::all());
    a.detections = detect(a.query_logits, a.boxes, model.options.class_names, a.picture.size(),
                          plan.request.score_threshold);
  }
  if (out.prefix_outputs.size() > 0) a.cls = xt::view(out.prefix_outputs, b, 0, xt::all());
  if (out.class_logits.size() > 0) a.class_logits = xt::view(out.class_logits, b, xt::all());
  if (plan.capture.empty()) return a;

  a.attention = image_attention(out, b);
  a.canvas = attention_canvas(a.picture, a.layout, a.attention.grid);
  a.montage_canvas = attention_canvas(a.picture, a.layout, a.attention.grid, kMontageTile);
  a.points = picture_pixels(plan.points, a.picture.size());
  for (const cv::Point2d& p : a.points) {
    a.point_tokens.push_back(token_at(p, a.picture.size(), a.layout, a.grid));
  }
  if (a.queries.size() > 0) {
    std::vector<std::string> names = model.options.class_names;
    if (model.options.detector) names.push_back("no-object");  // class_embed's last class
    a.top_queries = rank_queries(a.queries.shape(0), a.query_logits, names, plan.request.top_queries);
  }
  if (plan.view_module) a.view_rows = a.attention.token_rows(*plan.view_module, a.point_tokens);
  if (plan.cls_module) a.cls_attention = a.attention.cls_rows(*plan.cls_module);
  if (plan.rollout) {
    a.rollout = image_rollout(a.attention, plan.request.fusion, plan.request.discard_ratio,
                              model.options.cls_token, a.point_tokens);
  }
  return a;
}

// The captured modules whose rows are the image's tokens: all but a query model's decoder.
std::vector<nn::ModulePath> token_modules(const ImageModel& model, const AnalysisPlan& plan) {
  const bool queries = model.options.target == Target::queries && !model.transformer.encoder_only();
  std::vector<nn::ModulePath> out;
  for (const nn::ModulePath& path : plan.capture) {
    if (!(queries && path.stack == nn::Stack::decoder)) out.push_back(path);
  }
  return out;
}

std::size_t at_once(std::size_t images) {
  return std::min(images, static_cast<std::size_t>(std::max(1, num_threads())));
}

// f(), with a failed allocation reported as what the run was doing, not as "std::bad_alloc".
template <class F>
auto naming_the_stage(const std::string& stage, F f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    throw Error("out_of_memory", "out of memory while " + stage);
  }
}

}  // namespace

std::string to_string(AttentionView view) {
  for (const auto& [v, name] : kViewNames) {
    if (v == view) return name;
  }
  return "";
}

AttentionView parse_attention_view(const std::string& name) {
  for (const auto& [view, text] : kViewNames) {
    if (name == text) return view;
  }
  throw Error("bad_attention_view",
              "expected points, heads, masks, rollout, cross, cls, cls_masks or none");
}

const std::vector<AttentionView>& all_attention_views() {
  static const std::vector<AttentionView> views = [] {
    std::vector<AttentionView> out;
    for (const auto& [view, name] : kViewNames) out.push_back(view);
    return out;
  }();
  return views;
}

bool AnalysisPlan::draws(AttentionView view) const {
  if (!asks(request, view)) return false;
  switch (view) {
    case AttentionView::points:
    case AttentionView::heads:
    case AttentionView::masks: return view_module.has_value();
    case AttentionView::rollout: return rollout;
    case AttentionView::cross: return cross_module.has_value();
    case AttentionView::cls:
    case AttentionView::cls_masks: return cls_module.has_value();
  }
  return false;
}

AnalysisPlan plan_analysis(const ImageModel& model, const AnalysisRequest& request) {
  model.check_layer(request.layer);
  AnalysisPlan plan;
  plan.request = request;
  plan.points = request.points.empty() ? kDefaultPoints : request.points;
  const std::size_t encoder_layers = model.transformer.encoder.layers.size();
  const std::size_t decoder_layers = model.transformer.decoder.layers.size();
  std::vector<nn::ModulePath> capture;
  const auto add = [&](const nn::ModulePath& path) {
    if (std::find(capture.begin(), capture.end(), path) == capture.end()) capture.push_back(path);
  };
  if (asks(request, AttentionView::points) || asks(request, AttentionView::heads) ||
      asks(request, AttentionView::masks)) {
    const bool decoder = request.view_stack == nn::Stack::decoder;
    if (decoder && decoder_layers == 0) throw Error("bad_view_stack", "the model has no decoder");
    if (decoder && model.options.target != Target::tokens) {
      throw Error("bad_view_stack", "the decoder's targets are learned queries, not the image's tokens");
    }
    const std::size_t layer = decoder ? layer_index(request.attention_layer, decoder_layers, "decoder")
                                      : layer_index(request.attention_layer, encoder_layers, "encoder");
    plan.view_module = decoder ? nn::ModulePath::decoder_self_attn(layer)
                               : nn::ModulePath::encoder_self_attn(layer);
    add(*plan.view_module);
  }
  if (asks(request, AttentionView::rollout)) {
    plan.rollout = true;
    for (std::size_t i = 0; i < encoder_layers; ++i) add(nn::ModulePath::encoder_self_attn(i));
  }
  if ((asks(request, AttentionView::cls) || asks(request, AttentionView::cls_masks)) &&
      model.options.cls_token) {
    plan.cls_module = nn::ModulePath::encoder_self_attn(
        layer_index(request.attention_layer, encoder_layers, "encoder"));
    add(*plan.cls_module);
  }
  if (asks(request, AttentionView::cross) && decoder_layers > 0) {
    plan.cross_module = nn::ModulePath::decoder_multihead_attn(
        layer_index(request.attention_layer, decoder_layers, "decoder"));
    add(*plan.cross_module);
  }
  // kept_layers alone decides what is saved and explored; the views' modules above are captured
  // for drawing only.
  const std::vector<nn::ModulePath> modules = model.attention_modules();
  std::vector<nn::ModulePath> kept;
  if (!request.kept_layers) {
    kept = modules;
  } else {
    for (const std::size_t index : *request.kept_layers) {
      bool found = false;
      for (const nn::ModulePath& path : modules) {
        if (path.layer == index) kept.push_back(path), found = true;
      }
      if (!found) throw Error("bad_kept_layers", "no layer " + std::to_string(index));
    }
  }
  for (const nn::ModulePath& path : kept) add(path);
  // The model's order, so pages and .npy files list modules as the model runs them.
  plan.capture = in_model_order(modules, capture);
  plan.kept = in_model_order(modules, kept);
  return plan;
}

MemoryEstimate estimate_memory(const ImageModel& model, const ImageBatch& batch, const AnalysisPlan& plan) {
  constexpr std::size_t F = sizeof(float);
  const std::size_t N = batch.pixels.shape(0), H = batch.pixels.shape(2), W = batch.pixels.shape(3);
  const std::size_t p = static_cast<std::size_t>(model.options.patch_size);
  const std::size_t E = static_cast<std::size_t>(model.options.transformer.d_model);
  const std::size_t ff = static_cast<std::size_t>(model.options.transformer.dim_feedforward);
  const std::size_t nh = static_cast<std::size_t>(model.options.transformer.nhead);
  const std::size_t Q = static_cast<std::size_t>(std::max<int64_t>(0, model.options.num_queries));
  const std::size_t T = model.options.num_prefix_tokens() + (H / p) * (W / p);
  MemoryEstimate e;
  e.tokens = T;
  // Pixels (resized and batched), the stem or backbone's first activations, and the layers'
  // activations: what any run takes.
  std::size_t base = 2 * N * 3 * H * W * F + N * T * (8 * E + 2 * ff) * F;
  // A stem's or ResNet's first stage: 16 channels at half or 64 at a quarter of the resolution.
  if (model.options.backbone || !model.options.stem_channels.empty()) base += 3 * N * 4 * H * W * F;
  e.whole = e.scores = base;
  const std::vector<nn::ModulePath> tokens = token_modules(model, plan);
  const std::size_t X = model.options.num_prefix_tokens();
  for (const nn::ModulePath& path : plan.capture) {
    if (std::find(tokens.begin(), tokens.end(), path) == tokens.end()) {
      const std::size_t whole = 2 * N * nh * Q * T * F;  // the forward's and the crops
      e.whole += whole;
      e.scores += whole;
      continue;
    }
    e.whole += N * nh * T * T * F * (X > 0 ? 3 : 2);  // the forward's, each image's crop(s)
    e.whole += at_once(N) * nh * T * T * F / 2;       // a saved map's encoding, per writing thread
    e.scores += N * 3 * T * E * F;                     // q, k and k packed for the kernel
  }
  if (plan.rollout) {
    // Whole: the fused layer, its entries, their order, the product and its result, per image
    // analysed at once. Scores: a block of rows, the counts of its weights, and the rows carried
    // back.
    e.whole += at_once(N) * (nh + 6) * T * T * F;
    e.scores += at_once(N) * (std::min(std::size_t{32} << 20, (nh + 2) * T * T * F) + rollout_counts_bytes(T));
  }
  return e;
}

std::size_t default_memory_budget() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return std::size_t{4} << 30;  // unknown: what a small machine has
  return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) / 4;
}

std::string mebibytes(std::size_t bytes) {
  return std::to_string((bytes + (std::size_t{1} << 20) - 1) >> 20) + " MiB";
}

BatchAnalysis analyse(const ImageModel& model, const std::vector<cv::Mat>& images,
                      const PreprocessOptions& preprocess, const AnalysisPlan& plan) {
  const ImageBatch batch = naming_the_stage("preprocessing the images", [&] {
    return image::preprocess(images, preprocess);
  });
  BatchAnalysis result;
  result.estimate = estimate_memory(model, batch, plan);
  const std::size_t budget = plan.request.max_memory_bytes;
  const MemoryEstimate& e = result.estimate;
  result.over_budget = budget > 0 && e.whole > budget;
  const bool whole_wanted = plan.request.whole_maps || e.whole <= e.scores + images.size() * kSmallWholeMaps;
  result.scored = (result.over_budget || !whole_wanted) && e.scores < e.whole &&
                  !token_modules(model, plan).empty();
  const std::size_t needed = result.scored ? e.scores : e.whole;
  if (budget > 0 && needed > budget) {
    throw Error("over_memory_budget",
                std::to_string(images.size()) + " image(s) at " + std::to_string(batch.pixels.shape(3)) + "x" +
                    std::to_string(batch.pixels.shape(2)) + " pixels (" + std::to_string(e.tokens) +
                    " tokens) need an estimated " + mebibytes(needed) + ", over the memory budget of " +
                    mebibytes(budget) + " (--max-memory-mb)");
  }
  const std::vector<nn::ModulePath> scored = result.scored ? token_modules(model, plan) : std::vector<nn::ModulePath>{};
  std::vector<nn::ModulePath> whole;
  for (const nn::ModulePath& path : plan.capture) {
    if (std::find(scored.begin(), scored.end(), path) == scored.end()) whole.push_back(path);
  }
  const auto start = std::chrono::steady_clock::now();
  const ImageModelOutput out = naming_the_stage("running the model", [&] {
    return model.forward(batch, plan.request.layer, whole, scored);
  });
  result.forward_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Each image's crops, fused maps and rollout are its own: the images share the pool.
  result.images.resize(images.size());
  naming_the_stage("computing the attention maps", [&] {
    parallel_for(images.size(), 1, [&](std::size_t begin, std::size_t end) {
      for (std::size_t b = begin; b < end; ++b) {
        result.images[b] = image_analysis(model, out, batch, b, images[b], preprocess, plan);
      }
    });
  });
  return result;
}

}  // namespace vitscope::image
