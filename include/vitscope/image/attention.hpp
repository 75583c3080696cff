#pragma once
// Attention as people inspect it: one image's captured weights cropped to its real tokens, heads
// fused, rolled out through the encoder (Abnar & Zuidema 2020, as vit-explain computes it), and
// thresholded to the top share of its mass (as DINO's visualize_attention.py).
//
// Token indices run row by row over an image's real token grid (h_i, w_i): t = i * w_i + j.

#include <array>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "vitscope/image/image_model.hpp"
#include "vitscope/image/views.hpp"
#include "vitscope/nn/attention_scores.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope::image {

enum class HeadFusion { mean, max, min };

// What an attention module relates, as people name it.
enum class ModuleKind { encoder_self, decoder_self, cross };
// "encoder self-attention", "decoder self-attention" or "decoder cross-attention".
std::string to_string(ModuleKind kind);
ModuleKind module_kind(const nn::ModulePath& path);
nn::ModulePath module_path(ModuleKind kind, std::size_t layer);

// "mean", "max" or "min"; throws vitscope::Error("bad_head_fusion") otherwise.
HeadFusion parse_head_fusion(const std::string& name);
std::string to_string(HeadFusion fusion);

// One image's attention, every module the forward captured, by module: (nh, L_i, S_i) over the
// patch tokens, with the padding tokens removed from both axes (queries keep all Q rows).
// Modules captured as scores (ImageModelOutput::attention_scores) are not held whole: token_rows,
// cls_rows and sequence_rows form the rows asked for, the same numbers either way.
struct ImageAttention {
  std::array<std::size_t, 2> grid{};  // (h_i, w_i): the image's real token grid
  std::map<nn::ModulePath, Tensor3> modules;
  // A model with X prefix tokens (CLS first): each module over all its real tokens, prefix
  // tokens first, (nh, X+S_i, X+S_i); empty without prefix tokens.
  std::size_t num_prefix_tokens = 0;
  std::map<nn::ModulePath, Tensor3> with_prefix;
  // Modules captured as scores, with this image's index in their batch.
  struct Scored {
    std::shared_ptr<const nn::AttentionScores> scores;
    std::size_t batch_index = 0;
  };
  std::map<nn::ModulePath, Scored> scored;
  // Where the image's X + S_i real tokens (prefix first) lie in the padded sequence.
  std::vector<std::size_t> sequence;

  // The encoder self-attention modules captured, whole or as scores, in layer order.
  std::vector<nn::ModulePath> encoder_modules() const;
  // (nh, R, S_i): the rows of patch tokens `tokens` over the patch tokens.
  Tensor3 token_rows(const nn::ModulePath& path, const std::vector<std::size_t>& tokens) const;
  // (nh, S_i): the CLS token's row over the patches (see cls_attention).
  Tensor2 cls_rows(const nn::ModulePath& path) const;
  // (nh, R, X+S_i): rows `rows` of the real tokens, prefix first, over the same tokens.
  Tensor3 sequence_rows(const nn::ModulePath& path, const std::vector<std::size_t>& rows) const;
};

// Image b's attention from a forward that captured some modules (ImageModel::forward's
// `attention`). Query axes of length Q (learned queries) are kept whole.
ImageAttention image_attention(const ImageModelOutput& output, std::size_t b);

// (nh,L,S) -> (L,S): the heads' mean, maximum or minimum.
Tensor2 fuse_heads(const Tensor3& weights, HeadFusion fusion);

// DINO's view: the CLS token's attention over the patches, (nh, X+S, X+S) -> (nh, S): row 0 with
// the prefix columns dropped, not renormalised (as visualize_attention.py takes attentions[:, 0, 1:]).
Tensor2 cls_attention(const Tensor3& with_prefix, std::size_t num_prefix_tokens);

// Attention rollout through `layers` (each (nh,S,S), first layer first): per layer the heads are
// fused, the lowest `discard_ratio` share of the fused entries set to 0, the identity added for the
// residual path, (A + I) / 2, rows renormalised, and the layers multiplied: R = A_n ... A_1.
// Row t of the result (S,S) is how much token t's final representation draws on each input token.
// keep_first never discards entry (0,0), as vit-explain keeps the CLS token's own entry.
Tensor2 attention_rollout(const std::vector<Tensor3>& layers, HeadFusion fusion,
                          float discard_ratio, bool keep_first = false);

// DINO's masks: true on the largest entries of `map` that together hold at least `threshold` of
// its mass (the entries whose ascending cumulative share exceeds 1 - threshold).
std::vector<bool> top_mass_mask(const std::vector<float>& map, float threshold);

// The token (row-major over `grid`) under an original-image pixel; the inverse of the drawing in
// views.hpp, so a marked point sits on the token whose map is shown.
std::size_t token_at(cv::Point2d pixel, cv::Size image, const TokenLayout& layout,
                     std::array<std::size_t, 2> grid);

// An image's rollout through its captured encoder layers. With prefix tokens it runs over every
// token, as vit-explain's does for ViTs, keeping the CLS token's own entry (keep_first). Layers
// captured whole are rolled out as attention_rollout does; layers captured as scores never form
// an (S,S) matrix: the rows drawn are carried back through the layers, last first, each layer
// formed block by block, with the same discarded entries and the same normalised rows.
struct ImageRollout {
  Tensor2 patches;  // (S_i,S_i): the patch tokens' rows over the patches; empty from scores
  Tensor2 points;   // (P,S_i): the rows of `point_tokens`
  Tensor2 mean;     // (h_i,w_i): the mean of the patch tokens' rows ("all tokens")
  Tensor2 cls;      // (h_i,w_i): the CLS token's row over the patches; empty without a CLS token
};
ImageRollout image_rollout(const ImageAttention& attention, HeadFusion fusion, float discard_ratio,
                           bool cls_token, const std::vector<std::size_t>& point_tokens);

// Row `row` of (L,S) as a (h_i, w_i) map over the key tokens.
Tensor2 key_map(const Tensor2& weights, std::size_t row, std::array<std::size_t, 2> grid);
// Row `row` of head `head` of (nh,L,S) as a (h_i, w_i) map, without copying the head.
Tensor2 key_map(const Tensor3& weights, std::size_t head, std::size_t row, std::array<std::size_t, 2> grid);

// The mean of all rows of (L,S) as a (h_i, w_i) map: where attention lands on average.
Tensor2 mean_key_map(const Tensor2& weights, std::array<std::size_t, 2> grid);

}  // namespace vitscope::image
