#include "opencv_limit.hpp"

#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>

namespace vitscope::cli {

namespace {

constexpr const char* kLimit = "OPENCV_IO_MAX_IMAGE_PIXELS";
// Set for the restarted process, so that it cannot restart again whatever it finds.
constexpr const char* kRestarted = "VITSCOPE_RESTARTED_FOR_OPENCV_LIMIT";

char** command_line = nullptr;
// This executable's path, read once: exec of "/proc/self/exe" itself would start valgrind's tool
// instead of vitscope under valgrind, which answers readlink with the program it runs.
std::string executable;

// A plain decimal number, as vitscope writes it; anything else (OpenCV also reads suffixes such as
// "KB") is replaced.
std::optional<std::uint64_t> plain_number(const char* text) {
  if (text == nullptr || *text == '\0') return std::nullopt;
  std::uint64_t value = 0;
  for (const char* c = text; *c != '\0'; ++c) {
    if (*c < '0' || *c > '9' || value > (UINT64_MAX - 9) / 10) return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(*c - '0');
  }
  return value;
}

}  // namespace

void keep_command_line(char** argv) {
  command_line = argv;
  char path[4096];
  const ssize_t length = readlink("/proc/self/exe", path, sizeof path - 1);
  if (length > 0) executable.assign(path, static_cast<std::size_t>(length));
}

void restart_with_opencv_limit(std::uint64_t max_pixels) {
  if (std::getenv(kRestarted) != nullptr) {
    unsetenv(kRestarted);
    return;
  }
  const char* current = std::getenv(kLimit);
  const std::optional<std::uint64_t> limit = plain_number(current);
  if (command_line == nullptr || executable.empty() || (limit && *limit <= max_pixels)) return;

  const std::optional<std::string> saved =
      current ? std::optional<std::string>(current) : std::nullopt;
  setenv(kLimit, std::to_string(max_pixels).c_str(), 1);
  setenv(kRestarted, "1", 1);
  execv(executable.c_str(), command_line);
  // Still here (no /proc, say): OpenCV keeps the limit it read, and the environment says so.
  unsetenv(kRestarted);
  if (saved) {
    setenv(kLimit, saved->c_str(), 1);
  } else {
    unsetenv(kLimit);
  }
}

}  // namespace vitscope::cli
