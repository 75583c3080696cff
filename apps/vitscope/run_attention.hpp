#pragma once
// The attention part of `vitscope run`: which modules a run captures, the PNG views and .npy maps
// it writes per image, and the maps the gallery's explorer shows.

#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "vitscope/image/attention.hpp"
#include "vitscope/image/image_model.hpp"

namespace vitscope::cli {

struct AttentionOptions {
  std::vector<std::string> points;  // "x,y": pixels, or fractions of the image when written with '.'
  std::string views = "points,heads,masks,rollout,cross,cls,cls_masks";
  std::string layers = "all";       // what --save-attention writes and the gallery explores
  int layer = -1;                   // the views' layer; -1: the last
  std::string module = "encoder";   // whose self-attention the points, heads and masks views show
  std::string head_fusion = "mean";
  float discard_ratio = 0.9f;
  float threshold = 0.6f;
  int top_queries = 6;
  bool save = false;
};

void add_attention_options(CLI::App& command, AttentionOptions& options);

// What one image's attention step is given.
struct ImageResult {
  const image::ImageModelOutput& output;
  std::size_t b;
  const cv::Mat& rgb;                // CV_32FC3 RGB as loaded
  cv::Size resized;                  // as the model saw it
};

// Registers an output file (kind, name inside the image's folder) and returns its path.
using OutputFile = std::function<std::filesystem::path(const std::string&, const std::string&)>;

// A run's attention choices, checked against the model once (UsageError when they do not fit).
class AttentionPlan {
 public:
  AttentionPlan(const AttentionOptions& options, image::ImageModel& model);

  // Modules to capture in every forward (the views' and --attention-layers'); empty when nothing
  // about attention was asked for.
  const std::vector<nn::ModulePath>& capture() const { return capture_; }
  // The files every image gets, (kind, name), to tell whether an earlier run's folder is complete.
  std::vector<std::pair<std::string, std::string>> files() const;
  // What decides the attention outputs: reused only when these match.
  nlohmann::ordered_json settings() const;

  // Writes the views (and .npy maps) of one image; returns the explorer's maps for its page.
  nlohmann::json write(const ImageResult& result, const OutputFile& output) const;

 private:
  struct Point {
    double x = 0, y = 0;
    bool fraction = false;
  };
  std::vector<cv::Point2d> pixels(cv::Size image) const;
  bool wants(const std::string& view) const;

  AttentionOptions options_;
  const image::ImageModel& model_;
  image::HeadFusion fusion_;
  std::vector<Point> points_;
  std::vector<std::string> views_;
  std::vector<nn::ModulePath> capture_;  // what the views and layers_ need
  std::vector<nn::ModulePath> layers_;   // --attention-layers: saved and in the explorer
  std::optional<nn::ModulePath> view_layer_;    // self_attn of the points, heads and masks views
  std::optional<nn::ModulePath> cross_module_;  // multihead_attn of the cross view
  std::optional<nn::ModulePath> cls_module_;    // encoder self_attn of the CLS views
};

}  // namespace vitscope::cli
