#pragma once
// The text of every JSON file a run writes (summary.json, a shard's summary, image.json), so
// `vitscope merge` writes the summary a single run would, byte for byte apart from timings.

#include <string>

#include <nlohmann/json.hpp>

namespace vitscope::cli {

inline std::string json_text(const nlohmann::ordered_json& json) {
  // Replaces bytes that are not UTF-8 (file names may hold any) instead of throwing.
  return json.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace vitscope::cli
