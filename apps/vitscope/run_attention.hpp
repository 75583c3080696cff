#pragma once
// The attention options of `vitscope run`: parsed into the library's AnalysisRequest, checked
// against the model into its AnalysisPlan, and recorded as the settings a rerun compares.

#include <cstddef>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "vitscope/image/analysis.hpp"
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
  double score_threshold = 0.7;  // a detector's detections (DETR's notebook value)
  bool save = false;
  int max_memory_mb = 0;  // 0: image::default_memory_budget()
};

void add_attention_options(CLI::App& command, AttentionOptions& options);

// The run's analysis: `layer` and the attention options checked against the model. Throws
// UsageError naming the option when they do not fit.
image::AnalysisPlan plan_run(const image::ImageModel& model, const std::string& layer,
                             const AttentionOptions& options);

// What decides the attention outputs: an earlier folder is reused only when these match.
nlohmann::ordered_json attention_settings(const image::AnalysisPlan& plan, bool save);

}  // namespace vitscope::cli
