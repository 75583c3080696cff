// vitscope merge: the shards of a run (`vitscope run --shard I/N`) joined into the summary.json
// and gallery that the run would have written unsharded. Refuses shards that are not one run:
// another model or settings, other inputs, shards missing or overlapping.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "json_text.hpp"
#include "shard.hpp"
#include "vitscope/error.hpp"
#include "vitscope/gallery/index_page.hpp"
#include "vitscope/io/atomic_file.hpp"

namespace vitscope::cli {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

struct ShardSummary {
  Shard shard;
  std::string name;  // the file's name in DIR
  Json summary;
};

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const std::string& item : items) text += (text.empty() ? "" : ", ") + item;
  return text;
}

Json read_summary(const fs::path& path) {
  std::ifstream in(path);
  try {
    Json summary = Json::parse(in);
    for (const char* key : {"model", "settings", "timings", "images", "shard"}) {
      if (!summary.contains(key)) throw Error("bad_shard", "no \"" + std::string(key) + "\"");
    }
    return summary;
  } catch (const std::exception& e) {
    throw Error("bad_shard", path.filename().string() + " is not a shard summary: " + e.what());
  }
}

// Every shard summary in dir, one per index of one count, sorted by index.
std::vector<ShardSummary> read_shards(const fs::path& dir) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) throw Error("bad_input", dir.string() + " is not a folder");
  std::map<int, std::vector<ShardSummary>> by_count;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (const std::optional<Shard> shard = parse_shard_summary_name(name)) {
      if (shard->index >= shard->count) {
        throw Error("bad_shard", name + " names shard " + std::to_string(shard->index) + " of " +
                                     std::to_string(shard->count) + ", which does not exist");
      }
      by_count[shard->count].push_back({*shard, name, Json()});
    }
  }
  if (by_count.empty()) {
    throw Error("no_shards", "no shard summaries (summary.shard-I-of-N.json) in " + dir.string() +
                                 "; they are written by vitscope run --shard");
  }
  if (by_count.size() > 1) {
    std::vector<std::string> runs;
    for (const auto& [count, shards] : by_count) {
      runs.push_back(std::to_string(shards.size()) + " of " + std::to_string(count) + " shards");
    }
    throw Error("overlapping_shards",
                "overlapping shards in " + dir.string() + ": summaries of runs split " +
                    join(runs) + "; remove the summaries of the run you do not want");
  }
  std::vector<ShardSummary> shards = std::move(by_count.begin()->second);
  const int count = by_count.begin()->first;
  std::sort(shards.begin(), shards.end(),
            [](const ShardSummary& a, const ShardSummary& b) { return a.shard.index < b.shard.index; });
  std::vector<std::string> missing;
  for (int i = 0, next = 0; i < count; ++i) {
    if (next < static_cast<int>(shards.size()) && shards[next].shard.index == i) {
      ++next;
    } else {
      missing.push_back(shard_summary_name({i, count}));
    }
  }
  if (!missing.empty()) {
    throw Error("missing_shards", std::to_string(missing.size()) + " of " + std::to_string(count) +
                                      " shards missing in " + dir.string() + ": no " +
                                      join(missing) + "; run them, then merge again");
  }
  for (ShardSummary& s : shards) {
    s.summary = read_summary(dir / s.name);
    const Json& record = s.summary.at("shard");
    if (record.value("index", -1) != s.shard.index || record.value("count", -1) != s.shard.count) {
      throw Error("bad_shard", s.name + " holds the summary of shard " + record.dump() +
                                   ", not of its name's");
    }
  }
  return shards;
}

// What must be the same in every shard of one run.
Json run_identity(const Json& summary) {
  return {{"model", summary.at("model")},
          {"settings", summary.at("settings")},
          {"image_settings", summary.at("shard").value("image_settings", Json())}};
}

std::string value_at(const Json& json, const Json::json_pointer& pointer) {
  return json.contains(pointer) ? json.at(pointer).dump() : "absent";
}

void check_one_run(const std::vector<ShardSummary>& shards) {
  const ShardSummary& first = shards.front();
  const Json identity = run_identity(first.summary);
  const Json& inputs = first.summary.at("shard");
  for (const ShardSummary& s : shards) {
    const Json other = run_identity(s.summary);
    const Json patch = Json::diff(identity, other);
    if (!patch.empty()) {
      const Json::json_pointer where(patch.at(0).at("path").get<std::string>());
      throw Error("different_settings",
                  first.name + " and " + s.name + " were made with different models or settings: " +
                      where.to_string() + " is " + value_at(identity, where) + " and " +
                      value_at(other, where) + "; rerun the shards with one command line");
    }
    const Json& other_inputs = s.summary.at("shard");
    if (other_inputs.value("input_digest", Json()) != inputs.value("input_digest", Json()) ||
        other_inputs.value("input_count", Json()) != inputs.value("input_count", Json())) {
      throw Error("different_inputs",
                  first.name + " and " + s.name + " were run over different inputs (" +
                      inputs.value("input_count", Json()).dump() + " and " +
                      other_inputs.value("input_count", Json()).dump() +
                      " files): the inputs changed while the shards ran, or the shards were given "
                      "different ones; rerun the shards over the same inputs");
    }
  }
}

// Every shard's images, in a single run's order, moved out of the shards' summaries (at 10^5
// images and more the summaries are gigabytes in memory: one copy is all there is room for). An
// image in two shards, or in a shard it does not belong to, is refused.
Json merge_images(std::vector<ShardSummary>& shards) {
  std::map<std::string, const ShardSummary*> owner;
  std::vector<Json*> images;
  for (ShardSummary& s : shards) {
    for (Json& image : s.summary.at("images")) {
      const std::string input = image.at("input").get<std::string>();
      const auto [it, inserted] = owner.emplace(input, &s);
      if (!inserted) {
        throw Error("overlapping_shards", "overlapping shards: " + input + " is in " +
                                              it->second->name + " and in " + s.name);
      }
      const int belongs = shard_of(input, s.shard.count);
      if (belongs != s.shard.index) {
        throw Error("overlapping_shards",
                    s.name + " lists " + input + ", which belongs to " +
                        shard_summary_name({belongs, s.shard.count}));
      }
      images.push_back(&image);
    }
  }
  // collect_inputs sorts by relative name; the names are unique.
  std::sort(images.begin(), images.end(), [](const Json* a, const Json* b) {
    return a->at("input").get_ref<const std::string&>() < b->at("input").get_ref<const std::string&>();
  });
  Json merged = Json::array();
  for (Json* image : images) merged.push_back(std::move(*image));
  return merged;
}

// Each time summed over the shards (shard-seconds, not the wall time of the array), and
// images_per_s the images per shard-second.
Json merge_timings(const std::vector<ShardSummary>& shards, std::size_t image_count) {
  Json timings = shards.front().summary.at("timings");
  for (auto& [key, value] : timings.items()) {
    double sum = 0;
    for (const ShardSummary& s : shards) sum += s.summary.at("timings").value(key, 0.0);
    value = sum;
  }
  if (timings.contains("images_per_s")) {
    timings["images_per_s"] = image_count / std::max(timings.value("total_s", 0.0), 1e-9);
  }
  return timings;
}

void merge(const std::string& dir_name) {
  const fs::path dir = dir_name;
  std::vector<ShardSummary> shards = read_shards(dir);
  check_one_run(shards);
  Json images = merge_images(shards);
  const Json timings = merge_timings(shards, images.size());
  Json summary = std::move(shards.front().summary);
  summary.erase("shard");
  summary["images"] = std::move(images);
  summary["timings"] = timings;
  const fs::path summary_path = dir / "summary.json";
  io::write_file_atomically(summary_path.string(), json_text(summary));
  gallery::write_index(dir, summary);

  std::map<std::string, std::size_t> counts;
  std::set<std::string> interrupted;
  for (const Json& image : summary.at("images")) {
    const std::string status = image.at("status").get<std::string>();
    counts[status] += 1;
    if (status == "skipped" && image.at("error") == "interrupted") {
      interrupted.insert(
          shard_summary_name({shard_of(image.at("input").get<std::string>(), shards.size()),
                              static_cast<int>(shards.size())}));
    }
  }
  std::cerr << "vitscope: merged " << shards.size() << " shards into " << summary_path.string()
            << ": " << summary.at("images").size() << " images: " << counts["ok"] << " ok, "
            << counts["error"] << " error, " << counts["skipped"] << " skipped" << std::endl;
  if (!interrupted.empty()) {
    throw Error("shards_incomplete",
                "interrupted shards did not reach every image (" +
                    join({interrupted.begin(), interrupted.end()}) +
                    "); rerun them, then merge again");
  }
  if (counts["error"] > 0) {
    throw Error("images_failed", std::to_string(counts["error"]) + " of " +
                                     std::to_string(summary.at("images").size()) +
                                     " images failed; see " + summary_path.string());
  }
}

}  // namespace

Command add_merge_command(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand(
      "merge",
      "Join the shards of a sharded run (vitscope run --shard) in DIR into DIR/summary.json and "
      "the gallery, as the run would have written them unsharded.");
  command->add_option("dir", *dir, "the shards' shared --out folder")->required()->type_name("DIR");
  return {command, [dir] { merge(*dir); }};
}

}  // namespace vitscope::cli
