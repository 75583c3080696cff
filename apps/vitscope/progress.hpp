#pragma once
// Progress of a long run on stderr: a bar redrawn in place on a terminal, else one plain line per
// image (for logs and pipes).

#include <chrono>
#include <cstddef>
#include <string>

namespace vitscope::cli {

class Progress {
 public:
  explicit Progress(std::size_t total);

  // One more item is done; name and status describe it on the plain lines.
  void advance(const std::string& name, const std::string& status);

  // A line of its own ("vitscope: warning: ..."), above the bar on a terminal.
  void warn(const std::string& message);

  // Ends the bar's line, so that what follows starts on its own.
  void finish();

 private:
  double elapsed_s() const;

  std::size_t total_;
  std::size_t done_ = 0;
  bool terminal_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace vitscope::cli
