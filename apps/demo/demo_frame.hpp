#pragma once
// The interactive demo's model of what is on screen, kept free of any window code so that it is
// tested headless: one image's forward output (run once, every attention module captured), the
// viewer's state, the keys that change it, and the frame drawn from both.
//
// The frame (CV_8UC3 BGR, always kFrameSize) is three parts:
//   left   the picture the model saw fitted into a kPanel x kPanel box, its token grid drawn, the
//          selected token outlined and the clicked point marked (neither in the CLS view); a
//          detector's detections boxed and labelled, the selected one highlighted;
//   right  a kRightWidth x kPanel box: the selected token's attention (or the CLS token's), the
//          fused map first then every head of the current layer (or the rollout, the PCA view,
//          the class overlay);
//   bottom a status strip: image, module, layer, fusion, token, inference time, and the keys.

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "vitscope/image/attention.hpp"
#include "vitscope/image/detections.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/image/views.hpp"
#include "vitscope/nn/tensor.hpp"

namespace vitscope::demo {

constexpr int kPanel = 480;        // the image box, and the height of the attention box
constexpr int kRightWidth = 720;   // the attention box's width
constexpr int kGap = 8;            // white gap between the boxes
constexpr int kStatusHeight = 48;  // two lines of text
const cv::Size kFrameSize(kPanel + kGap + kRightWidth, kPanel + kStatusHeight);
constexpr float kRolloutDiscard = 0.9f;
constexpr std::size_t kMaxQueryTiles = 12;
constexpr double kScoreThreshold = 0.7;  // a detector's detections, as vitscope run's default

// The attention modules a viewer switches between (m).
using image::ModuleKind;
using image::module_path;
using image::to_string;
// What the right box shows: attention of the selected token (a), rollout (r), PCA (f), classes (c).
enum class View { attention, rollout, pca, classes };

std::string to_string(View view);

// What the keys may switch to, read off the model.
struct ModelShape {
  std::size_t encoder_layers = 0;
  std::size_t decoder_layers = 0;
  bool queries = false;  // learned-query target: decoder self-attention is query x query
  bool head = false;     // a per-token class head (the class overlay)
  bool cls = false;      // a CLS token (t: its attention over the patches)
  bool detector = false; // DETR's heads: detections to box and click
  std::size_t heads = 0;

  static ModelShape of(const image::ImageModel& model);
  // The module kinds this model has, in the order m cycles through them: encoder self-attention
  // (when it has an encoder layer), decoder self-attention (token targets only) and
  // cross-attention (when it has a decoder).
  std::vector<ModuleKind> kinds() const;
  std::size_t layers(ModuleKind kind) const;
};

struct DemoState {
  ModuleKind kind = ModuleKind::encoder_self;
  std::size_t layer = 0;
  image::HeadFusion fusion = image::HeadFusion::mean;
  View view = View::attention;
  std::size_t token = 0;   // row-major over the image's token grid
  cv::Point2d point;       // the selected pixel of the picture (DemoImage::rgb)
  bool cls = false;        // the CLS token's attention (and rollout row) instead of the token's
  // The selected detection (index into DemoImage::detections): the cross view shows its query's
  // map per head; none selected, every query's fused map.
  std::optional<std::size_t> detection;
};

// The state a model starts in: its first module kind, layer 0, mean fusion, the attention view
// (a detector: the last decoder layer's cross-attention, as DETR's notebook shows).
DemoState initial_state(const ModelShape& shape);

enum class Action { none, redraw, next_image, previous_image, save, quit };

// Keys (as cv::waitKey returns them; 27 is Esc):
//   l / L next / previous layer      h head fusion mean -> max -> min
//   m next module kind               r rollout on/off       f PCA view on/off
//   c class overlay on/off           t CLS token instead of the selected token on/off
//   n / p next / previous image      s save the view        q / Esc quit
// Changes `state` and says what the viewer must do; keys that do not apply (c without a head, r
// without an encoder, t without a CLS token, unknown keys) change nothing and return
// Action::none.
Action apply_key(DemoState& state, int key, const ModelShape& shape);

// The key help, one line per key, for --help.
std::string key_help();

// One image as the demo shows it: its forward pass, run once.
struct DemoImage {
  std::string name;
  // CV_32FC3 RGB [0, 255]: the picture the views draw on and clicks fall on. The original image,
  // or where the model's resize mode crops (shorter-crop, patch-crop), the crop the model saw at
  // the model's resolution (as vitscope run draws its views), so every token lies where it is drawn.
  cv::Mat rgb;
  cv::Size original;               // the original image's size
  image::TokenLayout layout;
  // Every module, cropped to the real tokens: `modules` over the patch tokens, and for models
  // with prefix tokens `with_prefix` over them too (prefix tokens first).
  image::ImageAttention attention;
  Tensor3 features;                // (E,h,w) the model's output features
  Tensor3 logits;                  // (K,h,w), empty without a head
  std::size_t queries = 0;         // Q for learned-query models
  std::string top_class;           // "name (p%)" of a CLS classifier's best class, else empty
  std::vector<image::Detection> detections;  // a detector's, at kScoreThreshold, best first
  double inference_ms = 0;         // preprocess + forward
};

// Runs the model once on `rgb` through image::analyse, capturing every attention module.
DemoImage analyse_image(const image::ImageModel& model, const cv::Mat& rgb, const std::string& name);

// The token grid centre: the token selected when an image opens; and a detector's best detection.
void select_centre(DemoState& state, const DemoImage& image);

// Where the image sits in the frame: image pixel = (frame pixel - origin) / scale.
struct ImageBox {
  cv::Rect rect;  // in frame pixels
  double scale = 1;
};
ImageBox image_box(cv::Size image);

// A click at `frame_pixel`: when it falls on the image, selects the token under it (token_at of
// the image pixel), leaves the CLS view for that token's, and returns true; elsewhere changes
// nothing and returns false. On a detection's box (the smallest, where boxes overlap) it also
// selects that detection and shows its query's cross-attention; elsewhere on the image it
// deselects.
bool click(DemoState& state, cv::Point frame_pixel, const DemoImage& image);

// The token under the image pixel, (i, j) on the grid.
std::array<std::size_t, 2> token_cell(std::size_t token, const DemoImage& image);

// One map of the right box: (h_i,w_i) over the key tokens, drawn over the picture.
struct Tile {
  Tensor2 map;
  std::string caption;
};

// The maps the right box draws in the attention and rollout views, in order (empty in the
// others): the fused map then every head of the current module for the selected token (or the
// CLS token, or each learned query, or the selected detection's query); the rollout of the token
// (or of the CLS token), then the mean over all tokens.
std::vector<Tile> view_tiles(const DemoImage& image, const DemoState& state, const ModelShape& shape);

// The whole frame, kFrameSize, CV_8UC3 BGR.
cv::Mat compose_frame(const DemoImage& image, const DemoState& state, const ModelShape& shape,
                      const std::vector<std::string>& class_names);

// The status line's text (first line of the strip).
std::string status_line(const DemoImage& image, const DemoState& state, const ModelShape& shape);

}  // namespace vitscope::demo
