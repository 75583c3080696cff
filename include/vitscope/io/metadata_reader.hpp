#pragma once
// Typed reads of a model file's __metadata__ strings, naming the file and key in every error.

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include "vitscope/error.hpp"

namespace vitscope {

// Reads typed values out of __metadata__, naming the file and key in every error.
class MetadataReader {
 public:
  MetadataReader(const std::map<std::string, std::string>& metadata, const std::string& source)
      : metadata_(metadata), source_(source) {}

  bool has(const std::string& key) const { return metadata_.count(key) > 0; }

  const std::string& text(const std::string& key) const {
    auto it = metadata_.find(key);
    if (it == metadata_.end()) fail(key, "is missing");
    return it->second;
  }

  int64_t integer(const std::string& key) const {
    const std::string& value = text(key);
    errno = 0;
    char* end = nullptr;
    const long long parsed = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno == ERANGE) fail(key, "'" + value + "' is not an integer");
    return parsed;
  }

  // 0 when the key is absent: PyTorch's None for kdim / vdim.
  int64_t integer_or_zero(const std::string& key) const {
    return metadata_.count(key) ? integer(key) : 0;
  }

  double number(const std::string& key) const {
    const std::string& value = text(key);
    char* end = nullptr;
    const double parsed = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0') fail(key, "'" + value + "' is not a number");
    return parsed;
  }

  bool flag(const std::string& key) const {
    const std::string& value = text(key);
    if (value == "true" || value == "True") return true;
    if (value == "false" || value == "False") return false;
    fail(key, "'" + value + "' is not true or false");
  }

  bool flag_or(const std::string& key, bool fallback) const {
    return metadata_.count(key) ? flag(key) : fallback;
  }

  void expect_architecture(const std::string& architecture) const {
    if (text("architecture") != architecture) {
      fail("architecture", "'" + text("architecture") + "' is not " + architecture);
    }
  }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error("bad_metadata", source_ + ": metadata " + key + " " + what);
  }

 private:
  const std::map<std::string, std::string>& metadata_;
  const std::string& source_;
};

}  // namespace vitscope
