#include "progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>

namespace vitscope::cli {

namespace {

constexpr int kBarWidth = 30;
// Before this many seconds a rate says more about start-up than about the run.
constexpr double kRateAfterS = 0.5;

std::string bar(std::size_t done, std::size_t total) {
  const auto filled = static_cast<int>(kBarWidth * done / total);
  return "[" + std::string(static_cast<std::size_t>(filled), '#') +
         std::string(static_cast<std::size_t>(kBarWidth - filled), '.') + "]";
}

// "42 s", "3:07", "1:02:45"
std::string duration_text(long s) {
  if (s < 60) return std::to_string(s) + " s";
  std::ostringstream text;
  text << std::setfill('0');
  if (s >= 3600) text << s / 3600 << ":" << std::setw(2);
  text << (s / 60) % 60 << ":" << std::setw(2) << s % 60;
  return text.str();
}

}  // namespace

Progress::Progress(std::size_t total)
    : total_(total),
      terminal_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::advance(const std::string& name, const std::string& status) {
  ++done_;
  if (!terminal_) {
    std::cerr << "vitscope: [" << done_ << "/" << total_ << "] " << name << ": " << status << "\n";
    return;
  }
  std::ostringstream line;
  line << "\r\033[K" << bar(done_, total_) << " " << done_ << "/" << total_;
  const double elapsed = elapsed_s();
  if (elapsed >= kRateAfterS) {
    const double rate = done_ / elapsed;
    line << "  " << std::fixed << std::setprecision(1) << rate << " images/s  ETA "
         << duration_text(std::lround((total_ - done_) / rate));
  }
  std::cerr << line.str() << std::flush;
}

void Progress::warn(const std::string& message) {
  std::cerr << (terminal_ ? "\r\033[K" : "") << "vitscope: warning: " << message << "\n" << std::flush;
}

void Progress::finish() {
  if (terminal_ && done_ > 0) std::cerr << "\n";
}

}  // namespace vitscope::cli
