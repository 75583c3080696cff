#pragma once
// The image model of docs/image_model.md: patch embedding (or DETR's ResNet backbone and
// input_proj), 2-D position, to_sequence, the core Transformer (token or learned-query target, or
// encoder only), to_feature_map, optional head (or DETR's class and box heads on the queries).

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vitscope/image/patch_embed.hpp"
#include "vitscope/image/position.hpp"
#include "vitscope/image/preprocess.hpp"
#include "vitscope/image/resnet.hpp"
#include "vitscope/nn/attention_recorder.hpp"
#include "vitscope/nn/linear.hpp"
#include "vitscope/nn/transformer.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope::image {

enum class Position { sine, learned, none };
enum class PositionMode { input, attention };
enum class Target { tokens, queries };
// The head on every output token, or on the final CLS token (timm's global_pool "token").
enum class HeadPool { tokens, cls };

struct ImageModelOptions {
  nn::TransformerOptions transformer;  // batch_first is always false
  int64_t in_chans = 3;
  int64_t patch_size = 16;
  std::vector<int64_t>
      stem_channels;  // c_1..c_n of a convolutional stem (2^n = patch_size), or none
  int64_t image_size = 224;
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
  ResizeOptions resize;  // resize_mode, resize_size, interpolation (preprocess.hpp)
  Position position = Position::sine;
  PositionMode position_mode = PositionMode::attention;
  Target target = Target::tokens;
  int64_t num_queries = 0;
  GridResize pos_resize = GridResize::size;  // how learned positions meet an image's grid
  int64_t num_classes = 0;
  std::vector<std::string> class_names;
  HeadPool head_pool = HeadPool::tokens;
  // Prefix tokens before the patches, in this order (docs/image_model.md, "Prefix tokens").
  bool cls_token = false;
  bool dist_token = false;            // DeiT's distillation token
  int64_t num_register_tokens = 0;    // DINOv2's registers
  int64_t pos_embed_prefix = 0;       // leading prefix tokens with a row in pos_embed
  std::array<std::size_t, 2> pos_grid{};  // (gh,gw) of a learned pos_embed
  // DETR's backbone in place of the patch embedding: a ResNet's C5, then input_proj (1x1 conv).
  // patch_size is its stride: 32, or 16 with dilation.
  std::optional<ResNetOptions> backbone;
  // DETR's heads on the decoder's queries in place of `head`: class_embed (K+1 classes, the last
  // "no object") and bbox_embed (boxes), as docs/image_model.md's "Detector" describes.
  bool detector = false;

  // X: how many prefix tokens come before the patch tokens.
  std::size_t num_prefix_tokens() const {
    return std::size_t{cls_token} + std::size_t{dist_token} +
           static_cast<std::size_t>(num_register_tokens);
  }
};

// Which output becomes the feature map: "output" (default: the decoder output for token targets,
// else the encoder's), "encoder" (the encoder output after its norm) or one layer's output,
// "encoder.layers.N" / "decoder.layers.N" (decoder layers only for token targets).
struct ImageModelOutput {
  Tensor4 features;                  // (B,E,h,w) of the chosen layer
  Tensor4 logits;                    // (B,K,h,w) head on the token outputs; empty without a head or for queries
  Tensor3 prefix_outputs;            // (B,X,E) final prefix tokens (CLS first), after the norm; else empty
  Tensor2 class_logits;              // (B,K) head on the CLS token (head_pool cls), else empty
  Tensor3 query_outputs;             // (B,Q,E) for learned-query models, else empty
  Tensor3 query_logits;              // (B,Q,K) for learned-query models with a head (K+1 for a detector), else empty
  Tensor3 query_boxes;               // (B,Q,4) a detector's (cx,cy,w,h), fractions of the unpadded image, else empty
  xt::xtensor<bool, 3> token_mask;   // (B,h,w) true on padding tokens
  std::vector<std::array<std::size_t, 2>> grids;  // per image its real token grid (h_i, w_i)
  // Per captured attention module, per head (B,nh,L,S) over the padded grid: L and S are X + h*w
  // tokens (prefix tokens first), or Q for a query model's decoder queries.
  std::map<nn::ModulePath, Tensor4> attention;
  // Per module captured as scores instead, what forms any rows of those weights.
  std::map<nn::ModulePath, std::shared_ptr<const nn::AttentionScores>> attention_scores;
  std::size_t num_prefix_tokens = 0;  // X
};

class ImageModel {
 public:
  ImageModel() = default;
  explicit ImageModel(const ImageModelOptions& options);

  PreprocessOptions preprocess_options() const;

  // batch from preprocess() with this model's patch size -> outputs. `layer` as described above;
  // throws vitscope::Error("bad_layer") for a name this model does not have.
  // `attention` lists the attention modules whose per-head weights to capture; the others keep
  // the fast path that never forms them. Throws vitscope::Error("bad_attention_module") for a
  // module attention_modules() does not list. `scored` lists modules captured as scores
  // (attention_scores), at a cost linear in the tokens; a module in both is captured both ways.
  ImageModelOutput forward(const ImageBatch& batch, const std::string& layer = "output",
                           const std::vector<nn::ModulePath>& attention = {},
                           const std::vector<nn::ModulePath>& scored = {}) const;

  // The names `layer` accepts, in order.
  std::vector<std::string> layer_names() const;
  // Throws vitscope::Error("bad_layer") naming the layers this model has when it has no `layer`.
  void check_layer(const std::string& layer) const;

  // Every attention module, in the order the model runs them.
  std::vector<nn::ModulePath> attention_modules() const { return transformer.attention_modules(); }

  // patches (S,B,E) -> (X+S,B,E): the prefix tokens, each with its pos_embed row if it has one.
  Tensor3 with_prefix_tokens(const Tensor3& patches) const;
  // prefix outputs (B,X,E) -> logits (B,K) of the CLS token (and the distillation token's).
  Tensor2 cls_head(const Tensor3& prefix_outputs) const;

  ImageModelOptions options;
  PatchEmbed patch_embed;      // patch_embed.stem.N.*, patch_embed.proj.*; unused with a backbone
  ResNet backbone;             // backbone.0.body.* when options.backbone is set
  PatchProjection input_proj;  // input_proj.weight (E,C5,1,1), input_proj.bias (E) with a backbone
  Tensor4 pos_embed;           // (1,E,gh,gw) when position is learned (grid layout), else empty
  Tensor3 pos_embed_sequence;  // pos_embed (1,P+gh*gw,E) as ViTs store it (sequence layout), else empty
  Tensor3 cls_token;           // (1,1,E) with cls_token, else empty
  Tensor3 dist_token;          // (1,1,E) with dist_token, else empty
  Tensor3 register_tokens;     // (1,R,E) with register tokens, else empty
  Tensor2 query_embed;         // query_embed.weight (Q,E) when the target is queries, else empty
  nn::Transformer transformer;
  nn::Linear head;             // E -> K when num_classes > 0
  nn::Linear head_dist;        // E -> K on the distillation token (DeiT), with head_pool cls
  nn::Linear class_embed;      // E -> K+1 on the queries, with detector
  std::array<nn::Linear, 3> bbox_embed;  // bbox_embed.layers.N: E -> E -> E -> 4, with detector

  // A detector's query outputs (Q,B,E) -> boxes (Q,B,4): relu(layers 0, 1), layer 2, sigmoid.
  Tensor3 boxes(const Tensor3& queries) const;
};

struct ImageModelFile {
  ImageModel model;
  std::map<std::string, std::string> metadata;
};

// Throws vitscope::Error for unreadable, malformed or non-fitting files.
ImageModelFile load_image_model(const std::string& path);

}  // namespace vitscope::image
