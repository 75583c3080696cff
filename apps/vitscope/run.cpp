// vitscope run: images and folders of images through an image model, each image's features and
// views written to its own folder under --out, and a summary.json of the whole run.

#include <algorithm>
#include <chrono>
#include <new>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "interrupt.hpp"
#include "json_text.hpp"
#include "opencv_limit.hpp"
#include "precision.hpp"
#include "prefetch.hpp"
#include "progress.hpp"
#include "run_attention.hpp"
#include "shard.hpp"
#include "threads.hpp"
#include "vitscope/error.hpp"
#include "vitscope/gallery/index_page.hpp"
#include "vitscope/gallery/outputs.hpp"
#include "vitscope/image/analysis.hpp"
#include "vitscope/image/image_file.hpp"
#include "vitscope/image/image_model.hpp"
#include "vitscope/image/inputs.hpp"
#include "vitscope/image/load.hpp"
#include "vitscope/io/atomic_file.hpp"
#include "vitscope/nn/parallel.hpp"

namespace vitscope::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Json = nlohmann::ordered_json;

// Written last into each image's folder: its presence means the folder is complete, and its
// settings tell whether a rerun may reuse it.
const std::string kRecordFile = "image.json";

struct RunOptions {
  std::vector<std::string> inputs;
  std::string out;
  std::string model = VITSCOPE_DEFAULT_MODEL;
  int batch = 1;
  int threads = 1;
  std::string precision;
  int size = 0;  // 0: the model's image_size
  std::string resize_mode;    // empty: the model's resize_mode
  int resize_size = 0;        // 0: the model's resize_size
  int max_size = 0;           // 0: the model's max_size
  std::string interpolation;  // empty: the model's interpolation
  std::string layer = "output";
  bool overwrite = false;
  std::int64_t max_pixels = static_cast<std::int64_t>(image::LoadLimits{}.max_pixels);
  std::string view_format = "png";
  std::string shard;  // --shard's value; empty: the whole run
  AttentionOptions attention;
};

// One entry of summary.json.
struct Record {
  std::string input;
  std::string status;                                        // "ok", "error" or "skipped"
  std::string error;                                         // empty: null
  std::vector<std::pair<std::string, std::string>> outputs;  // kind -> path relative to --out
  Json size;  // [w, h] of the original image, or null
  Json grid;  // [h_i, w_i], or null
  Json prediction;  // {"class", "index", "probability"} of a CLS classifier's top class, or null
  Json detections;  // a detector's detection count (summary.json detection_count), or null
};

Json to_json(const Record& r) {
  Json outputs = Json::object();
  for (const auto& [kind, path] : r.outputs) outputs[kind] = path;
  return {{"input", r.input},
          {"status", r.status},
          {"error", r.error.empty() ? Json(nullptr) : Json(r.error)},
          {"outputs", outputs},
          {"size", r.size},
          {"grid", r.grid},
          {"prediction", r.prediction},
          {"detection_count", r.detections}};
}

// What a run needs besides its options: the model, the analysis and where everything goes.
struct Job {
  const RunOptions& options;
  const image::ImageModel& model;
  const image::AnalysisPlan& plan;
  image::PreprocessOptions preprocess;
  fs::path out_dir;
  Json settings;  // what decides an image's results: reused only when these match
  std::vector<gallery::ImageOutput> outputs;

  fs::path folder(const Record& r) const { return out_dir / r.input; }
};

// An earlier run's results for r, when every file is there and they were made the same way.
bool reuse_complete(const Job& job, Record& r) {
  const fs::path folder = job.folder(r);
  for (const gallery::ImageOutput& output : job.outputs) {
    std::error_code error;
    if (!fs::exists(folder / output.file, error)) return false;
  }
  Json record;
  try {
    std::ifstream in(folder / kRecordFile);
    record = Json::parse(in);
  } catch (const Json::exception&) {
    return false;
  }
  if (record.value("settings", Json()) != job.settings) return false;
  r.status = "ok";
  for (const gallery::ImageOutput& output : job.outputs) {
    r.outputs.emplace_back(output.kind, r.input + "/" + output.file);
  }
  r.size = record.value("size", Json());
  r.grid = record.value("grid", Json());
  r.prediction = record.value("prediction", Json());
  r.detections = record.value("detection_count", Json());
  return true;
}

struct Loaded {
  std::size_t record;  // index into the records
  cv::Mat rgb;
};

// The part of a run's time its images' outputs took, summed over the threads that made them.
struct OutputTimes {
  double draw_s = 0;    // drawing the pictures and gathering the files' contents
  double encode_s = 0;  // encoding and writing them
};

// One output of one image: drawn, then encoded and written; any error is kept for its image.
struct OutputTask {
  std::size_t image;   // index into the batch
  std::size_t output;  // index into job.outputs
  std::string error;
  OutputTimes times;
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void run_output_task(const Job& job, const image::ImageAnalysis& analysis, const Record& r,
                     OutputTask& task) {
  const gallery::ImageOutput& output = job.outputs[task.output];
  try {
    fs::create_directories(job.folder(r));
    const Clock::time_point start = Clock::now();
    const gallery::FileWriter writer = output.prepare({analysis, r.input, job.options.model});
    const Clock::time_point drawn = Clock::now();
    writer(job.folder(r) / output.file);
    task.times.draw_s = std::chrono::duration<double>(drawn - start).count();
    task.times.encode_s = seconds_since(drawn);
  } catch (const std::bad_alloc&) {
    task.error = "out of memory while drawing and writing " + output.file;
  } catch (const std::exception& e) {
    task.error = e.what();
  }
}

// The record that marks an image's folder complete, written once all its files are there.
void finish_image(const Job& job, const image::ImageAnalysis& analysis, Record& r) {
  for (const gallery::ImageOutput& output : job.outputs) {
    r.outputs.emplace_back(output.kind, r.input + "/" + output.file);
  }
  const Json top = gallery::top_predictions(analysis, job.model.options.class_names);
  r.status = "ok";
  r.size = {analysis.original.width, analysis.original.height};
  r.grid = {analysis.grid[0], analysis.grid[1]};
  r.prediction = top.empty() ? Json(nullptr) : top.at(0);
  r.detections = job.model.options.detector ? Json(analysis.detections.size()) : Json(nullptr);
  const Json record = {{"settings", job.settings}, {"size", r.size}, {"grid", r.grid},
                       {"prediction", r.prediction}, {"detection_count", r.detections}};
  io::write_file_atomically((job.folder(r) / kRecordFile).string(), json_text(record));
}

void fail(Record& r, const std::string& message) {
  r.status = "error";
  r.error = message;
  r.outputs.clear();
}

struct Timings {
  double load_s = 0;
  double forward_s = 0;
  OutputTimes outputs;
};

// Writes the batch's files: every output of every image is one task on the pool, so the two big
// montages of one image do not leave a thread idle; they are flushed to disk together. After a
// signal no task is started; an image with a task left undone is left as not reached.
void write_batch(const Job& job, const image::BatchAnalysis& analysis, const std::vector<Loaded>& loaded,
                 std::vector<Record>& records, Timings& timings) {
  std::vector<OutputTask> tasks;
  for (std::size_t b = 0; b < loaded.size(); ++b) {
    for (std::size_t i = 0; i < job.outputs.size(); ++i) tasks.push_back({b, i, {}, {}});
  }
  std::vector<char> done(tasks.size(), 0);
  std::vector<std::string> errors(loaded.size());
  {
    // The batch's files reach the disk together, before the records that mark their images done.
    io::BatchFlush batch_files(job.out_dir.string());
    parallel_for(tasks.size(), 1, [&](std::size_t begin, std::size_t end) {
      for (std::size_t t = begin; t < end && !interrupted(); ++t) {
        OutputTask& task = tasks[t];
        run_output_task(job, analysis.images[task.image], records[loaded[task.image].record], task);
        done[t] = 1;
      }
    });
    try {
      batch_files.flush();
    } catch (const std::exception& e) {
      std::fill(errors.begin(), errors.end(), e.what());
    }
  }
  std::vector<char> complete(loaded.size(), 1);
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    const OutputTask& task = tasks[t];
    timings.outputs.draw_s += task.times.draw_s;
    timings.outputs.encode_s += task.times.encode_s;
    if (!done[t]) complete[task.image] = 0;
    if (errors[task.image].empty()) errors[task.image] = task.error;
  }
  // And the records together, before the summary counts them.
  io::BatchFlush batch_records(job.out_dir.string());
  for (std::size_t b = 0; b < loaded.size(); ++b) {
    Record& r = records[loaded[b].record];
    if (!errors[b].empty()) {
      fail(r, errors[b]);
    } else if (complete[b]) {
      try {
        finish_image(job, analysis.images[b], r);
      } catch (const std::exception& e) {
        fail(r, e.what());
      }
    }
  }
  try {
    batch_records.flush();
  } catch (const std::exception& e) {
    for (const Loaded& l : loaded) {
      if (records[l.record].status == "ok") fail(records[l.record], e.what());
    }
  }
}

// Over the memory budget, what a batch leaves out and what brings it back.
std::string rows_only_warning(const Job& job, const image::BatchAnalysis& analysis,
                              const std::vector<Loaded>& loaded, const std::vector<Record>& records) {
  std::string names = records[loaded.front().record].input;
  if (loaded.size() > 1) names += " and " + std::to_string(loaded.size() - 1) + " more";
  const std::size_t budget = job.plan.request.max_memory_bytes;
  return names + ": " + std::to_string(analysis.estimate.tokens) +
         " tokens: whole attention maps would take about " + image::mebibytes(analysis.estimate.whole) +
         ", over the memory budget of " + image::mebibytes(budget) +
         "; attention kept as rows, every view drawn" +
         (!job.options.attention.save                         ? ""
          : job.model.options.num_prefix_tokens() > 0 ? ", --save-attention writes the prefix tokens' and points' rows only"
                                                      : ", --save-attention writes the points' rows only") +
         "; --max-memory-mb " + std::to_string((analysis.estimate.whole >> 20) + 1) + " keeps whole maps";
}

// Runs the model on loaded images and writes their results; a failure of the batch fails each of
// its images, a failure to write fails that image only. A batch over the memory budget is run
// again one image at a time, so that only the images that cannot fit alone fail.
void run_batch(const Job& job, std::vector<Loaded>& loaded, std::vector<Record>& records,
               Timings& timings, Progress& progress) {
  if (interrupted()) {
    loaded.clear();
    return;
  }
  std::vector<cv::Mat> images;
  for (const Loaded& l : loaded) images.push_back(l.rgb);
  try {
    const image::BatchAnalysis analysis = image::analyse(job.model, images, job.preprocess, job.plan);
    timings.forward_s += analysis.forward_s;
    if (analysis.scored && analysis.over_budget) progress.warn(rows_only_warning(job, analysis, loaded, records));
    write_batch(job, analysis, loaded, records, timings);
  } catch (const Error& e) {
    if (e.code() != "over_memory_budget" || loaded.size() == 1) {
      for (const Loaded& l : loaded) fail(records[l.record], e.what());
    } else {
      for (Loaded& l : loaded) {
        std::vector<Loaded> alone;
        alone.push_back(std::move(l));
        run_batch(job, alone, records, timings, progress);
      }
      loaded.clear();
      return;
    }
  } catch (const std::exception& e) {  // the model failed on the batch
    for (const Loaded& l : loaded) fail(records[l.record], e.what());
  }
  for (const Loaded& l : loaded) {
    const Record& r = records[l.record];
    if (!r.status.empty()) progress.advance(r.input, r.status);
  }
  loaded.clear();
}

std::vector<Record> process(const Job& job, const std::vector<image::InputFile>& inputs, Timings& timings,
                            Progress& progress) {
  std::vector<Record> records(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) records[i].input = inputs[i].relative;
  // What this run decodes, in order; the rest is skipped or reused as it comes.
  std::vector<std::size_t> to_load;
  std::vector<fs::path> paths;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].is_image && (job.options.overwrite || !reuse_complete(job, records[i]))) {
      to_load.push_back(i);
      paths.push_back(inputs[i].path);
    }
  }
  image::LoadLimits limits;
  limits.max_pixels = static_cast<std::uint64_t>(job.options.max_pixels);
  const std::size_t batch = static_cast<std::size_t>(job.options.batch);
  // A batch decoded ahead, so the next batch is ready when the model finishes this one; with one
  // thread, no decoding thread beside the model.
  Prefetcher prefetcher(paths, limits, job.options.threads > 1 ? 2 * batch : 0);
  std::size_t next_load = 0;
  std::vector<Loaded> loaded;
  for (std::size_t i = 0; i < inputs.size() && !interrupted(); ++i) {
    Record& r = records[i];
    if (!inputs[i].is_image) {
      r.status = "skipped";
      r.error = "not an image extension";
    } else if (next_load < to_load.size() && to_load[next_load] == i) {
      Prefetched image = prefetcher.next();
      ++next_load;
      timings.load_s += image.load_s;
      if (image.error.empty()) {  // loaded: its progress comes with its batch
        loaded.push_back({i, std::move(image.rgb)});
        if (loaded.size() == batch) run_batch(job, loaded, records, timings, progress);
        continue;
      }
      fail(r, image.error);
    }
    progress.advance(r.input, r.status);
  }
  if (!loaded.empty()) run_batch(job, loaded, records, timings, progress);
  // What a signal kept the run from reaching; a rerun does it.
  for (Record& r : records) {
    if (r.status.empty()) {
      r.status = "skipped";
      r.error = "interrupted";
    }
  }
  return records;
}

std::string summary_line(const std::vector<Record>& records, double total_s) {
  std::size_t ok = 0, error = 0, skipped = 0;
  for (const Record& r : records) {
    (r.status == "ok" ? ok : r.status == "error" ? error : skipped) += 1;
  }
  std::ostringstream line;
  line << records.size() << " images: " << ok << " ok, " << error << " error, " << skipped
       << " skipped in " << std::fixed << std::setprecision(1) << total_s << " s ("
       << records.size() / std::max(total_s, 1e-9) << " images/s)";
  return line.str();
}

std::size_t error_count(const std::vector<Record>& records) {
  return static_cast<std::size_t>(std::count_if(
      records.begin(), records.end(), [](const Record& r) { return r.status == "error"; }));
}

// The model's preprocessing with the flags that override it.
image::PreprocessOptions preprocess_options(const RunOptions& o, const image::ImageModel& model) {
  image::PreprocessOptions preprocess = model.preprocess_options();
  if (o.size > 0) preprocess.size = o.size;
  if (!o.resize_mode.empty()) preprocess.resize.resize_mode = image::parse_resize_mode(o.resize_mode);
  if (!o.interpolation.empty()) {
    preprocess.resize.interpolation = image::parse_interpolation(o.interpolation);
  }
  if (o.resize_size > 0) {
    if (preprocess.resize.resize_mode != image::ResizeMode::shorter_crop) {
      throw UsageError("--resize-size is for --resize-mode shorter-crop; this run's is " +
                       image::resize_mode_name(preprocess.resize.resize_mode));
    }
    preprocess.resize.resize_size = o.resize_size;
  }
  if (o.max_size > 0) {
    if (preprocess.resize.resize_mode != image::ResizeMode::shorter_max) {
      throw UsageError("--max-size is for --resize-mode shorter-max; this run's is " +
                       image::resize_mode_name(preprocess.resize.resize_mode));
    }
    preprocess.resize.max_size = o.max_size;
  }
  return preprocess;
}

// What besides size decides an image's pixels (resize_size only where it is used; max_size, only
// shorter-max's, is listed for it alone).
Json resize_settings(const image::PreprocessOptions& p) {
  const bool shorter = p.resize.resize_mode == image::ResizeMode::shorter_crop;
  Json settings = {{"resize_mode", image::resize_mode_name(p.resize.resize_mode)},
                   {"resize_size", shorter ? Json(image::effective_resize_size(p)) : Json(nullptr)},
                   {"interpolation", image::interpolation_name(p.resize.interpolation)}};
  if (p.resize.resize_mode == image::ResizeMode::shorter_max) {
    settings["max_size"] = image::effective_max_size(p);
  }
  return settings;
}

void run_images(const RunOptions& o) {
  const Clock::time_point start = Clock::now();
  restart_with_opencv_limit(static_cast<std::uint64_t>(o.max_pixels));
  watch_interrupts();
  use_threads(o.threads);
  use_precision(o.precision);
  const fs::path out_dir = o.out;
  const std::optional<Shard> shard =
      o.shard.empty() ? std::nullopt : std::optional(parse_shard(o.shard, process_environment));
  std::vector<image::InputFile> all_inputs;
  try {
    all_inputs = image::collect_inputs(o.inputs, out_dir);
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  const std::vector<image::InputFile> inputs = shard ? shard_inputs(all_inputs, *shard) : all_inputs;

  const image::ImageModelFile file = image::load_image_model(o.model);
  const image::AnalysisPlan plan = plan_run(file.model, o.layer, o.attention);
  const image::PreprocessOptions preprocess = preprocess_options(o, file.model);
  const Json resize = resize_settings(preprocess);
  Json settings = {{"model", o.model},
                   {"layer", o.layer},
                   {"size", preprocess.size},
                   {"resize_mode", resize.at("resize_mode")},
                   {"resize_size", resize.at("resize_size")},
                   {"interpolation", resize.at("interpolation")},
                   {"view_format", o.view_format},
                   {"attention", attention_settings(plan, o.attention.save)}};
  if (resize.contains("max_size")) settings["max_size"] = resize.at("max_size");
  // Named only when not the default, so folders written before --precision are still reused.
  if (o.precision != "fp32") settings["precision"] = o.precision;
  const Job job{o,        file.model, plan, preprocess, out_dir, settings,
                gallery::image_outputs(file.model, plan, o.attention.save,
                                       image::parse_picture_format(o.view_format))};
  fs::create_directories(out_dir);

  Timings timings;
  Progress progress(inputs.size());
  const std::vector<Record> records = process(job, inputs, timings, progress);
  progress.finish();
  const double total_s = seconds_since(start);

  Json images = Json::array();
  for (const Record& r : records) images.push_back(to_json(r));
  Json summary = {{"model", o.model},
                        {"settings",
                         {{"layer", o.layer},
                          {"size", preprocess.size},
                          {"resize_mode", resize.at("resize_mode")},
                          {"resize_size", resize.at("resize_size")},
                          {"interpolation", resize.at("interpolation")},
                          {"view_format", o.view_format},
                          {"batch", o.batch},
                          {"threads", o.threads},
                          {"precision", o.precision},
                          {"max_pixels", o.max_pixels},
                          {"overwrite", o.overwrite}}},
                        {"timings",
                         {{"total_s", total_s},
                          {"images_per_s", records.size() / std::max(total_s, 1e-9)},
                          {"load_s", timings.load_s},
                          {"forward_s", timings.forward_s},
                          {"draw_s", timings.outputs.draw_s},
                          {"encode_s", timings.outputs.encode_s}}},
                        {"images", images}};
  if (resize.contains("max_size")) summary["settings"]["max_size"] = resize.at("max_size");
  if (file.model.options.detector) summary["settings"]["score_threshold"] = o.attention.score_threshold;
  // A shard writes its own summary and leaves summary.json and the gallery to `vitscope merge`.
  if (shard) summary["shard"] = shard_record(*shard, all_inputs, settings);
  const fs::path summary_path = out_dir / (shard ? shard_summary_name(*shard) : "summary.json");
  io::write_file_atomically(summary_path.string(), json_text(summary));
  if (!shard) gallery::write_index(out_dir, summary);

  if (const int signal = interrupted()) {
    throw Interrupted(signal, "interrupted by " + signal_name(signal) + ": " +
                                  summary_line(records, total_s) + "; summary in " +
                                  summary_path.string() + "; run the same command again to finish");
  }
  std::cerr << "vitscope: " << summary_line(records, total_s) << std::endl;
  if (const std::size_t errors = error_count(records); errors > 0) {
    throw Error("images_failed", std::to_string(errors) + " of " + std::to_string(records.size()) +
                                     " images failed; see " + summary_path.string());
  }
}

}  // namespace

Command add_run_command(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  RunOptions& o = *options;
  CLI::App* command = app.add_subcommand(
      "run",
      "Run an image model on images and folders of images (searched recursively); write each "
      "image's features and views to OUT/<its path>/ and a summary to OUT/summary.json.");
  command->add_option("inputs", o.inputs, "image files and folders")->required()->type_name("PATH");
  command->add_option("--out", o.out, "output folder (created if missing)")
      ->required()
      ->type_name("DIR");
  command->add_option("--model", o.model, "image model file (.safetensors)")
      ->capture_default_str()
      ->type_name("FILE");
  command->add_option("--batch", o.batch, "images per forward pass")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  command
      ->add_option("--size", o.size,
                   "image side after resizing: the longer side (longer, patch-crop), the crop "
                   "(shorter-crop), both sides (stretch) or the shorter side (shorter-max) "
                   "(default: the model's image_size)")
      ->check(CLI::Range(1, 16384));
  command
      ->add_option("--resize-mode", o.resize_mode,
                   "longer (pad to a multiple of p), shorter-crop (torchvision/timm eval: shorter "
                   "side to --resize-size, centre crop --size), stretch (--size x --size, Hugging "
                   "Face), patch-crop (DINO: longer, cropped to a multiple of p), shorter-max "
                   "(DETR eval: shorter side --size, longer at most --max-size) (default: the "
                   "model's, else longer)")
      ->check(CLI::IsMember(image::resize_mode_names()));
  command
      ->add_option("--resize-size", o.resize_size,
                   "shorter-crop's shorter side before the crop (default: the model's, else "
                   "floor(size / 0.875): 256 for 224)")
      ->check(CLI::Range(1, 16384));
  command
      ->add_option("--max-size", o.max_size,
                   "shorter-max's bound on the longer side (default: the model's, else DETR's 1333)")
      ->check(CLI::Range(1, 16384));
  command
      ->add_option("--interpolation", o.interpolation,
                   "OpenCV cv::resize, not PIL: area-linear (INTER_AREA shrinking, INTER_LINEAR "
                   "enlarging), linear, cubic (default: the model's, else area-linear)")
      ->check(CLI::IsMember(image::interpolation_names()));
  command
      ->add_option("--layer", o.layer,
                   "which output becomes the features: output, encoder, "
                   "encoder.layers.N or decoder.layers.N")
      ->capture_default_str();
  command
      ->add_option("--view-format", o.view_format,
                   "how the pictures are encoded: png (lossless), jpg (about ten times faster to "
                   "encode) or webp (smallest, slowest); the thumbnails are always JPEG")
      ->capture_default_str()
      ->check(CLI::IsMember(image::picture_format_names()));
  command->add_flag("--overwrite", o.overwrite, "recompute images whose outputs are complete");
  command->add_option("--max-pixels", o.max_pixels, "refuse images with more pixels than this")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::numeric_limits<std::int64_t>::max()));
  command
      ->add_option("--shard", o.shard,
                   "run one shard of the inputs: I/N (0 <= I < N); auto (a Slurm array task's "
                   "index and count); auto/N (the Slurm array task, or a Kubernetes Indexed Job's "
                   "JOB_COMPLETION_INDEX, of N shards). Writes OUT/summary.shard-I-of-N.json; "
                   "`vitscope merge OUT` joins the shards")
      ->type_name("SPEC");
  add_attention_options(*command, o.attention);
  add_threads_option(*command, o.threads);
  add_precision_option(*command, o.precision);
  return {command, [options] { run_images(*options); }};
}

}  // namespace vitscope::cli
