// vitscope bench: load and forward timings of a model on seeded random inputs, as one JSON object:
// an nn.Transformer on random sequences, an image model on a batch of random pictures.

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <opencv2/core.hpp>

#include "commands.hpp"
#include "model_option.hpp"
#include "precision.hpp"
#include "threads.hpp"
#include "vitscope/image/preprocess.hpp"
#include "vitscope/io/model_file.hpp"
#include "vitscope/nn/kernel_level.hpp"
#include "vitscope/nn/parallel.hpp"

namespace vitscope::cli {

namespace {

using Clock = std::chrono::steady_clock;

constexpr unsigned kSeed = 0;  // fixed, so runs time the same inputs

struct BenchOptions {
  std::string model;
  TransformerArguments given;
  int src_len = 0;     // Transformer: required
  int tgt_len = 0;     // 0: encoder only
  int image_size = 0;  // image model: 0 is the model's image_size
  int batch = 1;
  int threads = 1;
  std::string precision;
  int repeat = 10;
  int warmup = 1;
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// A standard-normal (len, N, E) sequence, or (N, len, E) for a batch_first model.
Tensor3 random_sequence(std::size_t len, std::size_t batch, const nn::TransformerOptions& model,
                        std::mt19937& rng) {
  const std::size_t e = static_cast<std::size_t>(model.d_model);
  Tensor3 x = model.batch_first ? Tensor3::from_shape({batch, len, e})
                                : Tensor3::from_shape({len, batch, e});
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  return x;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

// This process's peak resident set, in MiB: VmHWM from /proc/self/status (kB). Not ru_maxrss,
// which Linux carries over execve from the parent: a bench started by a big process (a Python
// script with torch loaded) would report the parent's peak.
double peak_rss_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  rusage usage{};  // no procfs: ru_maxrss, in KiB on Linux
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

std::vector<double> time_runs(const std::function<void()>& forward, int warmup, int repeat) {
  for (int i = 0; i < warmup; ++i) forward();
  std::vector<double> times;
  for (int i = 0; i < repeat; ++i) {
    const Clock::time_point start = Clock::now();
    forward();
    times.push_back(ms_since(start));
  }
  return times;
}

// The sequence lengths and shapes one forward ran on, for the report.
struct BenchInputs {
  std::function<void()> forward;
  nlohmann::ordered_json shape;  // src_len, tgt_len, and the image sizes of an image model
};

BenchInputs transformer_inputs(const BenchOptions& o, const nn::Transformer& model) {
  if (o.src_len == 0) throw UsageError("--src-len is required for an nn.Transformer model");
  if (o.image_size > 0) throw UsageError("--image-size applies to image models; " + o.model + " is an nn.Transformer");
  const bool decode = o.tgt_len > 0 && !model.encoder_only();
  std::mt19937 rng(kSeed);
  auto src = std::make_shared<Tensor3>(random_sequence(o.src_len, o.batch, model.options, rng));
  auto tgt = std::make_shared<Tensor3>(decode ? random_sequence(o.tgt_len, o.batch, model.options, rng)
                                              : Tensor3{});
  BenchInputs inputs;
  inputs.forward = [&model, src, tgt, decode] {
    if (decode) {
      model.forward(*src, *tgt);
    } else {
      model.encoder.forward(*src);
    }
  };
  inputs.shape = {{"src_len", o.src_len}, {"tgt_len", decode ? o.tgt_len : 0}};
  return inputs;
}

// B pictures of uniform random pixels, image_size square, preprocessed as the model's own.
BenchInputs image_inputs(const BenchOptions& o, image::ImageModel& model) {
  if (o.src_len > 0 || o.tgt_len > 0) {
    throw UsageError("--src-len and --tgt-len apply to nn.Transformer models; " + o.model +
                     " is an image model: --image-size sets its input");
  }
  const int size = o.image_size > 0 ? o.image_size : static_cast<int>(model.options.image_size);
  cv::RNG rng(kSeed);
  std::vector<cv::Mat> pictures;
  for (int b = 0; b < o.batch; ++b) {
    cv::Mat rgb(size, size, CV_32FC3);
    rng.fill(rgb, cv::RNG::UNIFORM, 0.0f, 255.0f);
    pictures.push_back(rgb);
  }
  image::PreprocessOptions preprocess = model.preprocess_options();
  preprocess.size = size;
  auto batch = std::make_shared<image::ImageBatch>(image::preprocess(pictures, preprocess));
  const std::size_t H = batch->pixels.shape(2), W = batch->pixels.shape(3);
  const std::size_t p = static_cast<std::size_t>(model.options.patch_size);
  const bool encoder_only = model.transformer.encoder_only();
  const bool queries = model.options.target == image::Target::queries;
  const std::size_t S = (H / p) * (W / p);
  BenchInputs inputs;
  inputs.forward = [&model, batch] { model.forward(*batch); };
  inputs.shape = {{"image_size", size},
                  {"pixels", {o.batch, 3, H, W}},
                  {"src_len", S},  // patch tokens (prefix tokens aside)
                  {"tgt_len", encoder_only ? 0 : queries ? model.options.num_queries : int64_t(S)}};
  return inputs;
}

void run_bench(const BenchOptions& o) {
  use_threads(o.threads);
  use_precision(o.precision);
  const Clock::time_point load_start = Clock::now();
  ModelFile file = load_model_file(o.model, o.given);
  const double load_ms = ms_since(load_start);

  const BenchInputs inputs =
      file.image ? image_inputs(o, file.image->model) : transformer_inputs(o, file.transformer->model);
  const std::vector<double> times = time_runs(inputs.forward, o.warmup, o.repeat);

  nlohmann::ordered_json report;
  report["load_ms"] = load_ms;
  report["forward_ms"] = median(times);
  report["forward_ms_min"] = *std::min_element(times.begin(), times.end());
  report["repeat"] = o.repeat;
  report["threads"] = o.threads;
  report["batch"] = o.batch;
  report.update(inputs.shape);
  report["peak_rss_mb"] = peak_rss_mb();
  report["kernels"] = kernel_level();
  report["precision"] = o.precision;
  std::cout << report.dump() << "\n";
}

}  // namespace

Command add_bench_command(CLI::App& app) {
  auto options = std::make_shared<BenchOptions>();
  BenchOptions& o = *options;
  CLI::App* command = app.add_subcommand(
      "bench",
      "Time model loading and forward passes on seeded random inputs; prints one JSON object. "
      "An nn.Transformer runs on random (S,N,E) sequences: without --tgt-len, or for an "
      "encoder-only model, the encoder alone. An image model runs on --batch random pictures "
      "of --image-size pixels square, preprocessed as its own (the preprocessing is not timed).");
  add_model_option(*command, "--model", o.model);
  command->add_option("--src-len", o.src_len, "nn.Transformer: source length S (required)")
      ->check(CLI::Range(1, 65536));
  command->add_option("--tgt-len", o.tgt_len, "nn.Transformer: target length T (default: encoder only)")
      ->check(CLI::Range(1, 65536));
  command
      ->add_option("--image-size", o.image_size,
                   "image model: the pictures' side in pixels (default: the model's image_size)")
      ->check(CLI::Range(1, 8192));
  command->add_option("--batch", o.batch, "batch size N")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  command->add_option("--repeat", o.repeat, "timed forward passes")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  command->add_option("--warmup", o.warmup, "untimed forward passes first")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  add_threads_option(*command, o.threads);
  add_precision_option(*command, o.precision);
  add_transformer_arguments(*command, o.given);
  return {command, [options] { run_bench(*options); }};
}

}  // namespace vitscope::cli
