#pragma once
// Checks shared by the fuzz targets. Each target feeds one input to a parser that must either
// succeed or throw vitscope::Error; any other exception escapes, and libFuzzer reports it as a
// crash, like a sanitizer finding.

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "vitscope/error.hpp"

namespace vitscope::fuzz {

// The name the targets give their input, which every error message must start with.
inline const std::string kName = "fuzz-input";

[[noreturn]] inline void broken(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz check failed: %s\n%s\n", what, detail.c_str());
  std::abort();
}

inline void require(bool ok, const char* what, const std::string& detail = "") {
  if (!ok) broken(what, detail);
}

// An in-memory input cannot fail to read, so the I/O code would mean the parser read past what its
// own checks allowed; and the message contract (vitscope/error.hpp) is a single line about the input.
inline void check_error(const Error& e, const std::string& io_error_code) {
  const std::string message = e.what();
  require(e.code() != io_error_code, "in-memory input reported an I/O error", message);
  require(!e.code().empty(), "empty error code", message);
  require(message.rfind(kName + ": ", 0) == 0, "message does not start with the input name",
          message);
  require(message.find('\n') == std::string::npos, "message spans several lines", message);
}

}  // namespace vitscope::fuzz
