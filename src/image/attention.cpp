#include "vitscope/image/attention.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xview.hpp>

#include "rollout_rows.hpp"
#include "vitscope/error.hpp"
#include "vitscope/nn/parallel.hpp"

namespace vitscope::image {

namespace {

// Fused entries per parallel chunk: a whole map at the models' own sizes stays on one thread.
constexpr std::size_t kFuseGrain = std::size_t{1} << 18;

// Positions in the padded (h,w) token grid of the real tokens of a (h_i,w_i) grid, row by row.
std::vector<std::size_t> real_tokens(std::array<std::size_t, 2> grid, std::size_t padded_w) {
  std::vector<std::size_t> index;
  for (std::size_t i = 0; i < grid[0]; ++i) {
    for (std::size_t j = 0; j < grid[1]; ++j) index.push_back(i * padded_w + j);
  }
  return index;
}

std::vector<std::size_t> all_of(std::size_t n) {
  std::vector<std::size_t> index(n);
  std::iota(index.begin(), index.end(), 0);
  return index;
}

// (nh,L,S) planes starting at `planes`, restricted to the given query rows and key columns.
Tensor3 select(const float* planes, std::size_t nh, std::size_t L, std::size_t S,
               const std::vector<std::size_t>& rows, const std::vector<std::size_t>& cols) {
  Tensor3 out = Tensor3::from_shape({nh, rows.size(), cols.size()});
  float* to = out.data();
  for (std::size_t k = 0; k < nh; ++k) {
    const float* head = planes + k * L * S;
    for (std::size_t row : rows) {
      if (row >= L) throw Error("bad_attention_input", "no attention row " + std::to_string(row));
      const float* from = head + row * S;
      for (std::size_t col : cols) *to++ = from[col];
    }
  }
  return out;
}

// weights(b) of (N,nh,L,S), or weights (nh,L,S), restricted to the given rows and columns.
Tensor3 select(const Tensor4& weights, std::size_t b, const std::vector<std::size_t>& rows,
               const std::vector<std::size_t>& cols) {
  const std::size_t nh = weights.shape(1), L = weights.shape(2), S = weights.shape(3);
  return select(weights.data() + b * nh * L * S, nh, L, S, rows, cols);
}

Tensor3 select(const Tensor3& weights, const std::vector<std::size_t>& rows,
               const std::vector<std::size_t>& cols) {
  return select(weights.data(), weights.shape(0), weights.shape(1), weights.shape(2), rows, cols);
}

// Indices of `values` in ascending order; ties keep index order, so results never depend on the
// sort's implementation.
std::vector<std::size_t> ascending_order(const std::vector<float>& values) {
  std::vector<std::size_t> order = all_of(values.size());
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return values[a] < values[b]; });
  return order;
}

// The indices of the `count` lowest values, in no order: the first `count` of ascending_order,
// found without sorting (ties broken by index the same way).
std::vector<std::size_t> lowest(const std::vector<float>& values, std::size_t count) {
  std::vector<std::size_t> order = all_of(values.size());
  if (count >= order.size()) return order;
  std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(count), order.end(),
                   [&](std::size_t a, std::size_t b) {
                     return values[a] < values[b] || (values[a] == values[b] && a < b);
                   });
  order.resize(count);
  return order;
}

// (S,S) fused attention -> (A' + I) / 2 with rows summing to 1, where A' drops the lowest
// discard_ratio share of A's entries.
Tensor2 rollout_step(Tensor2 fused, float discard_ratio, bool keep_first) {
  const std::size_t S = fused.shape(0);
  const std::vector<float> entries(fused.begin(), fused.end());
  for (std::size_t index : lowest(entries, discarded_entries(entries.size(), discard_ratio))) {
    if (!(keep_first && index == 0)) fused.data()[index] = 0.0f;
  }
  for (std::size_t i = 0; i < S; ++i) add_identity_and_normalise(&fused(i, 0), i, S);
  return fused;
}

// a (S,S) @ b (S,S), accumulated in double: rollout multiplies many near-stochastic matrices.
// a is a rollout step, most of whose entries the discard ratio zeroed: a zero adds nothing to a
// row (whose entries are >= 0), so it is skipped.
Tensor2 matmul(const Tensor2& a, const Tensor2& b) {
  const std::size_t S = a.shape(0);
  Tensor2 out = Tensor2::from_shape({S, S});
  std::vector<double> row(S);
  for (std::size_t i = 0; i < S; ++i) {
    std::fill(row.begin(), row.end(), 0.0);
    const float* a_row = a.data() + i * S;
    for (std::size_t k = 0; k < S; ++k) {
      if (a_row[k] == 0.0f) continue;
      const double aik = a_row[k];
      const float* b_row = b.data() + k * S;
      for (std::size_t j = 0; j < S; ++j) row[j] += aik * b_row[j];
    }
    float* out_row = out.data() + i * S;
    for (std::size_t j = 0; j < S; ++j) out_row[j] = static_cast<float>(row[j]);
  }
  return out;
}

}  // namespace

HeadFusion parse_head_fusion(const std::string& name) {
  if (name == "mean") return HeadFusion::mean;
  if (name == "max") return HeadFusion::max;
  if (name == "min") return HeadFusion::min;
  throw Error("bad_head_fusion", "head fusion '" + name + "' is not mean, max or min");
}

std::string to_string(HeadFusion fusion) {
  switch (fusion) {
    case HeadFusion::mean: return "mean";
    case HeadFusion::max: return "max";
    case HeadFusion::min: return "min";
  }
  return "mean";
}

std::string to_string(ModuleKind kind) {
  switch (kind) {
    case ModuleKind::encoder_self: return "encoder self-attention";
    case ModuleKind::decoder_self: return "decoder self-attention";
    case ModuleKind::cross: return "decoder cross-attention";
  }
  return "";
}

ModuleKind module_kind(const nn::ModulePath& path) {
  if (path.stack == nn::Stack::encoder) return ModuleKind::encoder_self;
  return path.kind == nn::AttentionKind::self_attn ? ModuleKind::decoder_self : ModuleKind::cross;
}

nn::ModulePath module_path(ModuleKind kind, std::size_t layer) {
  switch (kind) {
    case ModuleKind::encoder_self: return nn::ModulePath::encoder_self_attn(layer);
    case ModuleKind::decoder_self: return nn::ModulePath::decoder_self_attn(layer);
    case ModuleKind::cross: return nn::ModulePath::decoder_multihead_attn(layer);
  }
  return {};
}

std::vector<nn::ModulePath> ImageAttention::encoder_modules() const {
  std::vector<nn::ModulePath> paths;
  for (const auto& [path, weights] : modules) {
    if (path.stack == nn::Stack::encoder) paths.push_back(path);
  }
  for (const auto& [path, s] : scored) {
    if (path.stack == nn::Stack::encoder) paths.push_back(path);
  }
  std::sort(paths.begin(), paths.end());  // the model's order: layer by layer
  return paths;
}

Tensor3 ImageAttention::sequence_rows(const nn::ModulePath& path,
                                      const std::vector<std::size_t>& rows) const {
  const auto found = scored.find(path);
  if (found == scored.end()) {
    const std::size_t X = num_prefix_tokens;
    const Tensor3& whole = X > 0 ? with_prefix.at(path) : modules.at(path);
    return select(whole, rows, all_of(whole.shape(2)));
  }
  std::vector<std::size_t> positions;
  for (std::size_t row : rows) positions.push_back(sequence.at(row));
  Tensor3 padded = found->second.scores->weights(found->second.batch_index, positions);
  const bool unpadded = !sequence.empty() && sequence.size() == padded.shape(2) &&
                        sequence.back() + 1 == sequence.size();
  if (unpadded) return padded;
  return select(padded, all_of(rows.size()), sequence);
}

Tensor3 ImageAttention::token_rows(const nn::ModulePath& path,
                                   const std::vector<std::size_t>& tokens) const {
  const std::size_t X = num_prefix_tokens;
  if (!scored.count(path)) return select(modules.at(path), tokens, all_of(modules.at(path).shape(2)));
  std::vector<std::size_t> rows;
  for (std::size_t t : tokens) rows.push_back(X + t);
  const Tensor3 with_prefix_cols = sequence_rows(path, rows);
  if (X == 0) return with_prefix_cols;
  std::vector<std::size_t> patches(with_prefix_cols.shape(2) - X);
  std::iota(patches.begin(), patches.end(), X);
  return select(with_prefix_cols, all_of(rows.size()), patches);
}

Tensor2 ImageAttention::cls_rows(const nn::ModulePath& path) const {
  if (!scored.count(path)) return cls_attention(with_prefix.at(path), num_prefix_tokens);
  const Tensor3 row = sequence_rows(path, {0});
  const std::size_t nh = row.shape(0), X = num_prefix_tokens, S = row.shape(2) - X;
  Tensor2 out = Tensor2::from_shape({nh, S});
  for (std::size_t k = 0; k < nh; ++k) std::copy_n(&row(k, 0, X), S, &out(k, 0));
  return out;
}

ImageAttention image_attention(const ImageModelOutput& output, std::size_t b) {
  if (b >= output.grids.size()) throw Error("bad_attention_input", "no image " + std::to_string(b));
  ImageAttention result;
  result.grid = output.grids[b];
  const std::size_t padded_w = output.token_mask.shape(2);
  const std::vector<std::size_t> tokens = real_tokens(result.grid, padded_w);
  const bool queries = output.query_outputs.size() > 0;
  const std::size_t Q = queries ? output.query_outputs.shape(1) : 0;
  const std::size_t X = output.num_prefix_tokens;
  result.num_prefix_tokens = X;
  result.sequence = all_of(X);
  for (std::size_t t : tokens) result.sequence.push_back(X + t);
  for (const auto& [path, scores] : output.attention_scores) result.scored[path] = {scores, b};
  if (X > 0) {
    // Prefix tokens are rows and columns 0..X-1; the patch grid follows them.
    std::vector<std::size_t> prefixed = all_of(X);
    for (std::size_t t : tokens) prefixed.push_back(X + t);
    const std::vector<std::size_t> patches(prefixed.begin() + static_cast<std::ptrdiff_t>(X), prefixed.end());
    for (const auto& [path, weights] : output.attention) {
      result.with_prefix[path] = select(weights, b, prefixed, prefixed);
      result.modules[path] = select(weights, b, patches, patches);
    }
    return result;
  }
  for (const auto& [path, weights] : output.attention) {
    // Decoder rows are learned queries in a query model; its self-attention keys are too.
    const bool query_rows = queries && path.stack == nn::Stack::decoder;
    const bool query_cols = query_rows && path.kind == nn::AttentionKind::self_attn;
    result.modules[path] = select(weights, b, query_rows ? all_of(Q) : tokens,
                                  query_cols ? all_of(Q) : tokens);
  }
  return result;
}

Tensor2 fuse_heads(const Tensor3& weights, HeadFusion fusion) {
  const std::size_t nh = weights.shape(0), L = weights.shape(1), S = weights.shape(2);
  if (nh == 0) throw Error("bad_attention_input", "no heads to fuse");
  // Head by head over whole (L,S) planes, in head order: the mean sums in float and divides in
  // double, as xt::mean does, so the maps match those drawn before, bit for bit.
  Tensor2 fused = Tensor2::from_shape({L, S});
  const std::size_t plane = L * S;
  // In parallel over ranges of entries: each entry still folds the heads in head order.
  parallel_for(plane, kFuseGrain, [&](std::size_t begin, std::size_t end) {
    float* out = fused.data() + begin;
    const std::size_t n = end - begin;
    const float* head = weights.data() + begin;
    std::copy_n(head, n, out);
    // One loop per fusion, so that each vectorises.
    const auto fold = [&](auto combine) {
      for (std::size_t k = 1; k < nh; ++k) {
        head += plane;
        for (std::size_t i = 0; i < n; ++i) out[i] = combine(out[i], head[i]);
      }
    };
    switch (fusion) {
      case HeadFusion::mean: fold([](float a, float b) { return a + b; }); break;
      case HeadFusion::max: fold([](float a, float b) { return std::max(a, b); }); break;
      case HeadFusion::min: fold([](float a, float b) { return std::min(a, b); }); break;
    }
    if (fusion == HeadFusion::mean) {
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(out[i] / static_cast<double>(nh));
    }
  });
  return fused;
}

Tensor2 cls_attention(const Tensor3& with_prefix, std::size_t num_prefix_tokens) {
  const std::size_t nh = with_prefix.shape(0), X = num_prefix_tokens;
  if (X == 0 || with_prefix.shape(1) <= X || with_prefix.shape(2) != with_prefix.shape(1)) {
    throw Error("bad_attention_input", "CLS attention needs (nh, X+S, X+S) self-attention with X > 0");
  }
  const std::size_t S = with_prefix.shape(2) - X;
  Tensor2 out = Tensor2::from_shape({nh, S});
  for (std::size_t k = 0; k < nh; ++k) std::copy_n(&with_prefix(k, 0, X), S, &out(k, 0));
  return out;
}

namespace {

// The patch block of a rollout over prefix and patch tokens: (X+S, X+S) -> (S, S).
Tensor2 patch_block(const Tensor2& rollout, std::size_t X) {
  const std::size_t S = rollout.shape(0) - X;
  Tensor2 out = Tensor2::from_shape({S, S});
  for (std::size_t i = 0; i < S; ++i) std::copy_n(&rollout(X + i, X), S, &out(i, 0));
  return out;
}

}  // namespace

ImageRollout image_rollout(const ImageAttention& attention, HeadFusion fusion, float discard_ratio,
                           bool cls_token, const std::vector<std::size_t>& point_tokens) {
  const std::size_t X = attention.num_prefix_tokens;
  const bool keep_first = cls_token && X > 0;
  const std::vector<nn::ModulePath> paths = attention.encoder_modules();
  if (!attention.scored.empty()) {
    return rollout_rows(attention, paths, fusion, discard_ratio, keep_first, point_tokens);
  }
  const auto& source = X > 0 ? attention.with_prefix : attention.modules;
  std::vector<Tensor3> layers;
  for (const nn::ModulePath& path : paths) layers.push_back(source.at(path));
  const Tensor2 rollout = attention_rollout(layers, fusion, discard_ratio, keep_first);
  ImageRollout result;
  result.patches = X > 0 ? patch_block(rollout, X) : rollout;
  result.points = Tensor2::from_shape({point_tokens.size(), result.patches.shape(1)});
  for (std::size_t i = 0; i < point_tokens.size(); ++i) {
    std::copy_n(&result.patches(point_tokens[i], 0), result.patches.shape(1), &result.points(i, 0));
  }
  result.mean = mean_key_map(result.patches, attention.grid);
  if (keep_first) {
    const Tensor2 cls_row = xt::view(rollout, xt::range(0, 1), xt::range(X, rollout.shape(1)));
    result.cls = key_map(cls_row, 0, attention.grid);
  }
  return result;
}

Tensor2 attention_rollout(const std::vector<Tensor3>& layers, HeadFusion fusion,
                          float discard_ratio, bool keep_first) {
  if (layers.empty()) throw Error("bad_attention_input", "rollout needs at least one layer");
  if (!(discard_ratio >= 0.0f && discard_ratio < 1.0f)) {
    throw Error("bad_attention_input", "the discard ratio must be in [0, 1)");
  }
  const std::size_t S = layers.front().shape(1);
  Tensor2 result = xt::eye<float>(S);
  for (const Tensor3& layer : layers) {
    if (layer.shape(1) != S || layer.shape(2) != S) {
      throw Error("bad_attention_input", "rollout needs square (nh,S,S) self-attention");
    }
    result = matmul(rollout_step(fuse_heads(layer, fusion), discard_ratio, keep_first), result);
  }
  return result;
}

std::vector<bool> top_mass_mask(const std::vector<float>& map, float threshold) {
  double total = 0;
  for (float v : map) total += v;
  std::vector<bool> keep(map.size(), false);
  if (total <= 0) return keep;
  double cumulative = 0;
  for (std::size_t index : ascending_order(map)) {
    cumulative += map[index] / total;
    keep[index] = cumulative > 1.0 - threshold;
  }
  return keep;
}

std::size_t token_at(cv::Point2d pixel, cv::Size image, const TokenLayout& layout,
                     std::array<std::size_t, 2> grid) {
  const auto axis = [&](double at, int original, int resized, std::size_t tokens) {
    const double x = std::clamp(std::floor(at), 0.0, original - 1.0);
    const double r = (x + 0.5) * resized / original;
    return std::min(tokens - 1, static_cast<std::size_t>(r / layout.patch_size));
  };
  const std::size_t i = axis(pixel.y, image.height, layout.resized.height, grid[0]);
  const std::size_t j = axis(pixel.x, image.width, layout.resized.width, grid[1]);
  return i * grid[1] + j;
}

Tensor2 key_map(const Tensor2& weights, std::size_t row, std::array<std::size_t, 2> grid) {
  if (row >= weights.shape(0) || weights.shape(1) != grid[0] * grid[1]) {
    throw Error("bad_attention_input", "the attention row does not fit the token grid");
  }
  Tensor2 map = Tensor2::from_shape({grid[0], grid[1]});
  std::copy_n(&weights(row, 0), weights.shape(1), map.data());
  return map;
}

Tensor2 key_map(const Tensor3& weights, std::size_t head, std::size_t row, std::array<std::size_t, 2> grid) {
  if (head >= weights.shape(0) || row >= weights.shape(1) || weights.shape(2) != grid[0] * grid[1]) {
    throw Error("bad_attention_input", "the attention row does not fit the token grid");
  }
  Tensor2 map = Tensor2::from_shape({grid[0], grid[1]});
  std::copy_n(&weights(head, row, 0), weights.shape(2), map.data());
  return map;
}

Tensor2 mean_key_map(const Tensor2& weights, std::array<std::size_t, 2> grid) {
  if (weights.shape(0) == 0 || weights.shape(1) != grid[0] * grid[1]) {
    throw Error("bad_attention_input", "the attention rows do not fit the token grid");
  }
  const Tensor1 mean = xt::mean(weights, {0});
  Tensor2 map = Tensor2::from_shape({grid[0], grid[1]});
  std::copy(mean.begin(), mean.end(), map.begin());
  return map;
}

}  // namespace vitscope::image
