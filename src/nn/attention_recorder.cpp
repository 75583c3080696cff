#include "vitscope/nn/attention_recorder.hpp"

#include <algorithm>
#include <ostream>
#include <tuple>

namespace vitscope::nn {

std::string LayerPath::str() const {
  return std::string(stack == Stack::encoder ? "encoder" : "decoder") + ".layers." +
         std::to_string(layer);
}

std::string ModulePath::str() const {
  return LayerPath{stack, layer}.str() +
         (kind == AttentionKind::self_attn ? ".self_attn" : ".multihead_attn");
}

bool ModulePath::operator<(const ModulePath& other) const {
  return std::tie(stack, layer, kind) < std::tie(other.stack, other.layer, other.kind);
}

std::ostream& operator<<(std::ostream& out, const ModulePath& path) { return out << path.str(); }

AttentionRecorder::AttentionRecorder(std::vector<ModulePath> modules,
                                     std::optional<LayerPath> layer_output,
                                     std::vector<ModulePath> scored)
    : modules_(std::move(modules)), layer_output_(layer_output), scored_(std::move(scored)) {}

bool AttentionRecorder::wants(const ModulePath& path) const {
  return std::find(modules_.begin(), modules_.end(), path) != modules_.end();
}

bool AttentionRecorder::wants_scores(const ModulePath& path) const {
  return std::find(scored_.begin(), scored_.end(), path) != scored_.end();
}

void AttentionRecorder::record_scores(const ModulePath& path,
                                      std::shared_ptr<const AttentionScores> scores) {
  scores_[path] = std::move(scores);
}

void AttentionRecorder::record(const ModulePath& path, Tensor4 weights) {
  weights_[path] = std::move(weights);
}

}  // namespace vitscope::nn
