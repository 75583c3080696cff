#pragma once
// The image pipeline that `vitscope run`, the demo and users' code share: a batch of loaded
// images through preprocessing and the model, each image's outputs cropped to its real tokens,
// its captured attention, and the maps its attention views draw (points, ranked queries, CLS
// attention, rollout).

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "vitscope/image/attention.hpp"
#include "vitscope/image/attention_views.hpp"
#include "vitscope/image/detections.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/image/preprocess.hpp"
#include "vitscope/image/views.hpp"
#include "vitscope/nn/attention_recorder.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope::image {

// The attention views, in the order their names are listed.
enum class AttentionView { points, heads, masks, rollout, cross, cls, cls_masks };
// "points", "heads", ...; parse_attention_view throws Error("bad_attention_view").
std::string to_string(AttentionView view);
AttentionView parse_attention_view(const std::string& name);
const std::vector<AttentionView>& all_attention_views();

// A reference point of the attention views: pixels, or fractions of the picture.
struct ReferencePoint {
  double x = 0, y = 0;
  bool fraction = false;
};

// What a user asks of a run, before it is checked against a model.
struct AnalysisRequest {
  std::string layer = "output";          // which output becomes the features (ImageModel::forward)
  std::vector<AttentionView> views;      // the attention views to draw
  std::vector<ReferencePoint> points;    // empty: four spread over the picture
  int attention_layer = -1;              // the views' layer, as Python indexes (-1: the last)
  nn::Stack view_stack = nn::Stack::encoder;  // whose self-attention points, heads and masks show
  // Layers whose every attention module is kept for saving and exploring: all of them
  // (nullopt), or these indices (an empty list: none).
  std::optional<std::vector<std::size_t>> kept_layers;
  HeadFusion fusion = HeadFusion::mean;
  float discard_ratio = 0.9f;   // rollout: share of the lowest entries dropped per layer
  float threshold = 0.6f;       // masks: share of the attention mass the kept tokens hold
  std::size_t top_queries = 6;  // cross view and explorer of a learned-query model
  double score_threshold = 0.7; // a detector's detections: its best real class's probability
  // Bytes a batch may take (0: no bound). Whole attention maps are kept when they fit and are
  // small (kSmallWholeMaps) or asked for (whole_maps); otherwise the token modules are kept as
  // scores (ImageAttention::scored): the same views, the same rows, no whole maps.
  std::size_t max_memory_bytes = 0;
  bool whole_maps = false;
};

// What whole maps may cost beyond scores, per image, unasked: above it they take far longer to
// roll out too (at 4,096 tokens, ten times the scores' time).
constexpr std::size_t kSmallWholeMaps = std::size_t{256} << 20;

// A request checked against a model: the modules each view reads and what the forward captures.
// plan_analysis throws vitscope::Error when the request does not fit the model:
// "bad_layer" (request.layer), "bad_attention_layer" (attention_layer), "bad_view_stack"
// (view_stack decoder without a token-target decoder), "bad_kept_layers" (a kept layer the
// model lacks).
struct AnalysisPlan {
  AnalysisRequest request;
  std::vector<ReferencePoint> points;         // request.points or the default four
  std::optional<nn::ModulePath> view_module;  // self_attn of the points, heads and masks views
  std::optional<nn::ModulePath> cross_module; // multihead_attn of the cross view
  std::optional<nn::ModulePath> cls_module;   // encoder self_attn of the CLS views
  std::vector<nn::ModulePath> kept;           // kept_layers' modules, in model order
  std::vector<nn::ModulePath> capture;        // everything the forward records, in model order
  bool rollout = false;                       // the rollout view is drawn

  // Whether `view` was asked for and this model has what it draws.
  bool draws(AttentionView view) const;
};
AnalysisPlan plan_analysis(const ImageModel& model, const AnalysisRequest& request);

// A learned query ranked as DETR's notebook keeps them: by the probability of its best class that
// is not background (0 without a head).
struct RankedQuery {
  std::size_t query = 0;
  double score = 0;
  std::string caption;  // "query q: name p%", or "query q"
};

// One image's results, cropped to its real token grid (h_i, w_i).
struct ImageAnalysis {
  // CV_32FC3 RGB [0, 255]: what the views draw on. The image as loaded, or where the resize mode
  // crops, the crop the model saw (at the model's resolution), so each token is drawn where it lies.
  cv::Mat picture;
  cv::Size original;             // the loaded image's size
  TokenLayout layout;            // where the tokens lie on the picture
  std::array<std::size_t, 2> grid{};
  Tensor3 features;              // (E,h_i,w_i) of the plan's layer
  Tensor3 logits;                // (K,h_i,w_i) of a per-token head, else empty
  Tensor2 queries;               // (Q,E) learned-query outputs, else empty
  Tensor2 query_logits;          // (Q,K) of a learned-query model's head, (Q,K+1) a detector's, else empty
  Tensor2 boxes;                 // (Q,4) a detector's (cx,cy,w,h) fractions of the picture, else empty
  std::vector<Detection> detections;  // a detector's queries at the plan's score_threshold, best first
  Tensor1 cls;                   // (E) the final CLS token, else empty
  Tensor1 class_logits;          // (K) a CLS classifier's logits, else empty
  ImageAttention attention;      // every captured module
  std::vector<cv::Point2d> points;       // the plan's points in picture pixels
  std::vector<std::size_t> point_tokens; // the token under each point
  std::vector<RankedQuery> top_queries;  // the plan's top_queries best queries, best first
  Tensor3 view_rows;             // (nh,P,S_i) the points' rows of the plan's view_module, else empty
  Tensor2 cls_attention;         // (nh,S_i) the CLS row of the plan's cls_module, else empty
  ImageRollout rollout;          // when the plan draws the rollout
  // What the attention views draw on; views drawn one after another share its tile background.
  AttentionCanvas canvas;
  // The same with tiles of at most kMontageTile pixels, for the montages: they hold (1+nh) tiles
  // per point, many times what a page shows at its width.
  AttentionCanvas montage_canvas;
};

constexpr int kMontageTile = 224;

// What a batch is estimated to take at its peak: with its token modules' attention captured whole
// (every (nh,S,S) map, the forward's and each image's crop, and the rollout's products), or as
// scores. Modules over learned queries are always captured whole: they grow with S, not S*S.
struct MemoryEstimate {
  std::size_t whole = 0;   // bytes
  std::size_t scores = 0;  // bytes
  std::size_t tokens = 0;  // the batch's sequence length, prefix tokens included
};
MemoryEstimate estimate_memory(const ImageModel& model, const ImageBatch& batch, const AnalysisPlan& plan);

struct BatchAnalysis {
  std::vector<ImageAnalysis> images;
  double forward_s = 0;  // the model's forward pass alone
  MemoryEstimate estimate;
  bool scored = false;   // the token modules were captured as scores: no whole maps
  bool over_budget = false;  // whole maps would not fit max_memory_bytes
};

// images (CV_32FC3 RGB, as load_image gives them) -> one analysis each, in one forward pass.
// Throws vitscope::Error("over_memory_budget") when even scores would not fit the request's
// max_memory_bytes, naming the estimate and the budget, and Error("out_of_memory") naming the
// stage when an allocation fails all the same.
BatchAnalysis analyse(const ImageModel& model, const std::vector<cv::Mat>& images,
                      const PreprocessOptions& preprocess, const AnalysisPlan& plan);

// "1234 MiB": a byte count as messages give it.
std::string mebibytes(std::size_t bytes);

// The memory budget a program takes when its user names none: a quarter of the machine's
// physical memory (4 GiB when the system does not say).
std::size_t default_memory_budget();

}  // namespace vitscope::image
