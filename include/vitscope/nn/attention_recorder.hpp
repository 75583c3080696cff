#pragma once
// What a forward pass hands out besides its output: the per-head attention weights of chosen
// modules and the output of one chosen layer. Modules are named by typed paths that print as
// their state_dict prefixes ("encoder.layers.0.self_attn"), so nothing is parsed back from text.

#include <cstddef>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vitscope/nn/attention_scores.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope::nn {

enum class Stack { encoder, decoder };
// self_attn in both stacks; multihead_attn is the decoder's cross-attention over the memory.
enum class AttentionKind { self_attn, multihead_attn };

// One layer of a stack: "encoder.layers.N" or "decoder.layers.N".
struct LayerPath {
  Stack stack = Stack::encoder;
  std::size_t layer = 0;

  std::string str() const;
  bool operator==(const LayerPath& other) const {
    return stack == other.stack && layer == other.layer;
  }
};

// One attention module: "encoder.layers.N.self_attn", "decoder.layers.N.self_attn" or
// "decoder.layers.N.multihead_attn". Ordered as the model runs them.
struct ModulePath {
  Stack stack = Stack::encoder;
  std::size_t layer = 0;
  AttentionKind kind = AttentionKind::self_attn;

  static ModulePath encoder_self_attn(std::size_t layer) {
    return {Stack::encoder, layer, AttentionKind::self_attn};
  }
  static ModulePath decoder_self_attn(std::size_t layer) {
    return {Stack::decoder, layer, AttentionKind::self_attn};
  }
  static ModulePath decoder_multihead_attn(std::size_t layer) {
    return {Stack::decoder, layer, AttentionKind::multihead_attn};
  }

  std::string str() const;
  bool operator==(const ModulePath& other) const {
    return stack == other.stack && layer == other.layer && kind == other.kind;
  }
  bool operator!=(const ModulePath& other) const { return !(*this == other); }
  bool operator<(const ModulePath& other) const;
};

// Prints str(), so test and log messages name modules as state_dict keys do.
std::ostream& operator<<(std::ostream& out, const ModulePath& path);

// Handed to a forward pass: records the per-head weights (N,nh,L,S) of the modules it was made
// for, the scores (what forms any of those rows later) of the `scored` modules, and the output of
// one layer. Modules not asked for keep the fast path that never forms their weights. One
// recorder per forward pass.
class AttentionRecorder {
 public:
  AttentionRecorder() = default;
  explicit AttentionRecorder(std::vector<ModulePath> modules,
                             std::optional<LayerPath> layer_output = std::nullopt,
                             std::vector<ModulePath> scored = {});

  bool wants(const ModulePath& path) const;
  bool wants_scores(const ModulePath& path) const;
  void record(const ModulePath& path, Tensor4 weights);
  void record_scores(const ModulePath& path, std::shared_ptr<const AttentionScores> scores);
  bool wants_output(const LayerPath& layer) const { return layer_output_ == layer; }
  void record_output(Tensor3 output) { output_ = std::move(output); }

  // Per module asked for and run, its weights (N,nh,L,S).
  const std::map<ModulePath, Tensor4>& weights() const { return weights_; }
  std::map<ModulePath, Tensor4> take_weights() { return std::move(weights_); }
  std::map<ModulePath, std::shared_ptr<const AttentionScores>> take_scores() { return std::move(scores_); }
  // The chosen layer's output (L,N,E), or empty when none was chosen or it did not run.
  const Tensor3& layer_output() const { return output_; }

 private:
  std::vector<ModulePath> modules_;
  std::optional<LayerPath> layer_output_;
  std::vector<ModulePath> scored_;
  std::map<ModulePath, Tensor4> weights_;
  std::map<ModulePath, std::shared_ptr<const AttentionScores>> scores_;
  Tensor3 output_;
};

// What one layer of a stack passes to its attention blocks: the recorder, if any, and where the
// layer sits.
struct LayerRecorder {
  AttentionRecorder* recorder = nullptr;
  LayerPath layer;

  bool wants(AttentionKind kind) const {
    return recorder && recorder->wants({layer.stack, layer.layer, kind});
  }
  bool wants_scores(AttentionKind kind) const {
    return recorder && recorder->wants_scores({layer.stack, layer.layer, kind});
  }
  void record(AttentionKind kind, Tensor4 weights) const {
    recorder->record({layer.stack, layer.layer, kind}, std::move(weights));
  }
  void record_scores(AttentionKind kind, std::shared_ptr<const AttentionScores> scores) const {
    recorder->record_scores({layer.stack, layer.layer, kind}, std::move(scores));
  }
};

}  // namespace vitscope::nn
