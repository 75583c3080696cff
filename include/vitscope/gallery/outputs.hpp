#pragma once
// The one list of what a run writes for each image: every file's kind (its key in summary.json),
// name, page caption and writer. `vitscope run` writes from it, lists it in the summary, checks it
// when a rerun may reuse a folder, and the image's page shows it; a new view is one entry here.

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vitscope/image/analysis.hpp"
#include "vitscope/image/image_file.hpp"
#include "vitscope/image/image_model.hpp"

namespace vitscope::gallery {

// What an output's writer knows of the image besides its analysis.
struct ImageContext {
  const image::ImageAnalysis& analysis;
  std::string input;  // its name relative to the run's inputs ('/'-separated): its folder
  std::string model;  // the model file, as the run names it
};

// Encodes a prepared output and writes it to its path; safe to run on any thread.
using FileWriter = std::function<void(const std::filesystem::path&)>;

struct ImageOutput {
  std::string kind;   // "features", "pca", "attention_points", "attention:<module>", ...
  std::string file;   // its name inside the image's folder
  std::string title;  // the caption of its picture on the page; empty for files that are not
  int picture = -1;   // its place among the page's pictures; -1: listed under Files only
  // Draws or gathers the output; the writer it returns encodes and writes it. Both may run on
  // any thread, the outputs of one image and of several at once.
  std::function<FileWriter(const ImageContext&)> prepare;
};

// The files of one image's folder for this model and plan, in the order summary.json lists them:
// features and their views, the model's own outputs, the attention views and (save_attention) the
// kept modules' maps, the thumbnail, and the page last. The pictures are in `format`, the
// thumbnail always JPEG.
std::vector<ImageOutput> image_outputs(const image::ImageModel& model,
                                       const image::AnalysisPlan& plan, bool save_attention,
                                       image::PictureFormat format = image::PictureFormat::png);

// The top classes predictions.json lists, as ImageNet's top-5: [{"class", "index",
// "probability"}], best first; an empty array without class_logits.
nlohmann::ordered_json top_predictions(const image::ImageAnalysis& analysis,
                                       const std::vector<std::string>& class_names);

}  // namespace vitscope::gallery
