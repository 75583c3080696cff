#include "shard.hpp"

#include <cstdio>
#include <cstdlib>
#include <regex>

#include "commands.hpp"

namespace vitscope::cli {

namespace {

constexpr int kMaxShards = 1000000;

// A decimal number of at most 9 digits (no sign, no spaces), or nullopt.
std::optional<int> parse_count(const std::string& text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  return std::stoi(text);
}

int require_number(const Environment& environment, const std::string& name) {
  const std::optional<std::string> value = environment(name);
  const std::optional<int> number = value ? parse_count(*value) : std::nullopt;
  if (!number) {
    throw UsageError("--shard auto: " + name +
                     (value ? " is '" + *value + "', not a number" : " is not set"));
  }
  return *number;
}

Shard checked(const Shard& shard, const std::string& spec) {
  if (shard.count < 1 || shard.count > kMaxShards) {
    throw UsageError("--shard " + spec + ": the shard count must be 1 to " +
                     std::to_string(kMaxShards) + ", not " + std::to_string(shard.count));
  }
  if (shard.index < 0 || shard.index >= shard.count) {
    throw UsageError("--shard " + spec + ": shard " + std::to_string(shard.index) +
                     " is not one of 0 to " + std::to_string(shard.count - 1));
  }
  return shard;
}

// A Slurm array task's shard. Task ids run from SLURM_ARRAY_TASK_MIN to _MAX; a sparse array
// (--array=0,2,5) would leave shards nobody runs, so its ids must be contiguous.
Shard slurm_shard(const Environment& environment) {
  const int id = require_number(environment, "SLURM_ARRAY_TASK_ID");
  const int min = require_number(environment, "SLURM_ARRAY_TASK_MIN");
  const int max = require_number(environment, "SLURM_ARRAY_TASK_MAX");
  const int count = require_number(environment, "SLURM_ARRAY_TASK_COUNT");
  if (max - min + 1 != count) {
    throw UsageError("--shard auto: the Slurm array's task ids " + std::to_string(min) + " to " +
                     std::to_string(max) + " are not contiguous (" + std::to_string(count) +
                     " tasks); use --array=0-" + std::to_string(count - 1));
  }
  return {id - min, count};
}

}  // namespace

std::uint64_t fnv1a_64(std::string_view bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

int shard_of(std::string_view relative, int count) {
  return static_cast<int>(fnv1a_64(relative) % static_cast<std::uint64_t>(count));
}

std::vector<image::InputFile> shard_inputs(const std::vector<image::InputFile>& inputs,
                                           const Shard& shard) {
  std::vector<image::InputFile> kept;
  for (const image::InputFile& input : inputs) {
    if (shard_of(input.relative, shard.count) == shard.index) kept.push_back(input);
  }
  return kept;
}

nlohmann::ordered_json shard_record(const Shard& shard, const std::vector<image::InputFile>& inputs,
                                    const nlohmann::ordered_json& image_settings) {
  // Names are separated by NUL, the one byte no file name holds.
  std::string names;
  for (const image::InputFile& input : inputs) names += input.relative + '\0';
  char digest[17];
  std::snprintf(digest, sizeof digest, "%016llx", static_cast<unsigned long long>(fnv1a_64(names)));
  return {{"index", shard.index},
          {"count", shard.count},
          {"input_count", inputs.size()},
          {"input_digest", digest},
          {"image_settings", image_settings}};
}

std::optional<std::string> process_environment(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

Shard parse_shard(const std::string& spec, const Environment& environment) {
  const std::string usage = "--shard " + spec + ": expected I/N, auto or auto/N";
  const std::size_t slash = spec.find('/');
  const std::string first = spec.substr(0, slash);
  std::optional<int> count;
  if (slash != std::string::npos) {
    count = parse_count(spec.substr(slash + 1));
    if (!count) throw UsageError(usage);
  }
  if (first != "auto") {
    const std::optional<int> index = parse_count(first);
    if (!index || !count) throw UsageError(usage);
    return checked({*index, *count}, spec);
  }
  if (environment("SLURM_ARRAY_TASK_ID")) {
    const Shard shard = checked(slurm_shard(environment), spec);
    if (count && *count != shard.count) {
      throw UsageError("--shard " + spec + ": the Slurm array has " + std::to_string(shard.count) +
                       " tasks, not " + std::to_string(*count));
    }
    return shard;
  }
  if (environment("JOB_COMPLETION_INDEX")) {
    if (!count) {
      throw UsageError("--shard auto: JOB_COMPLETION_INDEX is set but not the shard count: use "
                       "--shard auto/N with N the Job's completions");
    }
    return checked({require_number(environment, "JOB_COMPLETION_INDEX"), *count}, spec);
  }
  throw UsageError("--shard " + spec + ": neither SLURM_ARRAY_TASK_ID (a Slurm array task) nor "
                   "JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set");
}

std::string shard_summary_name(const Shard& shard) {
  return "summary.shard-" + std::to_string(shard.index) + "-of-" + std::to_string(shard.count) +
         ".json";
}

std::optional<Shard> parse_shard_summary_name(const std::string& name) {
  static const std::regex pattern(R"(summary\.shard-([0-9]{1,9})-of-([0-9]{1,9})\.json)");
  std::smatch match;
  if (!std::regex_match(name, match, pattern)) return std::nullopt;
  return Shard{std::stoi(match[1]), std::stoi(match[2])};
}

}  // namespace vitscope::cli
