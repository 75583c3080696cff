#pragma once
// One exception type for every bad input: a short machine-readable code plus a one-line message.

#include <stdexcept>
#include <string>

namespace vitscope {

class Error : public std::runtime_error {
 public:
  // code: snake_case name of the failure (e.g. "header_too_large"); message: one human-readable line.
  Error(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

}  // namespace vitscope
