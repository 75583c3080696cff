#pragma once
// Sharded runs: which inputs a shard of a run takes, and the names of the shards' summaries.
// An input belongs to shard FNV-1a-64(relative path) mod N, so adding or removing a file moves
// only that file; std::hash is not used because it may differ between builds and machines.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vitscope/image/inputs.hpp"

namespace vitscope::cli {

struct Shard {
  int index = 0;  // 0 <= index < count
  int count = 1;
};

// The 64-bit FNV-1a hash of bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
std::uint64_t fnv1a_64(std::string_view bytes);

// The shard an input's relative path (as summary.json lists it) belongs to, of count shards.
int shard_of(std::string_view relative, int count);

// The inputs of a run that belong to shard, in their order.
std::vector<image::InputFile> shard_inputs(const std::vector<image::InputFile>& inputs,
                                           const Shard& shard);

// What a shard's summary holds under "shard", for `vitscope merge` to check that the shards are
// one run: the shard, the count and FNV-1a digest of every input of the run (the shards of one
// run list the same files) and the settings each image's image.json records.
nlohmann::ordered_json shard_record(const Shard& shard, const std::vector<image::InputFile>& inputs,
                                    const nlohmann::ordered_json& image_settings);

// Reads an environment variable: the value, or nullopt when it is not set.
using Environment = std::function<std::optional<std::string>(const std::string&)>;

// The process's own environment.
std::optional<std::string> process_environment(const std::string& name);

// --shard's value: "I/N"; "auto" (a Slurm array task: SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN
// of SLURM_ARRAY_TASK_COUNT); "auto/N" (the Slurm array task, whose count must be N, or else a
// Kubernetes Indexed Job's JOB_COMPLETION_INDEX, of N). Throws UsageError saying what is wrong.
Shard parse_shard(const std::string& spec, const Environment& environment);

// "summary.shard-I-of-N.json".
std::string shard_summary_name(const Shard& shard);

// The shard a file name like "summary.shard-I-of-N.json" names, or nullopt for any other name.
std::optional<Shard> parse_shard_summary_name(const std::string& name);

}  // namespace vitscope::cli
