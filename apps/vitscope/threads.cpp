#include "threads.hpp"

#include <algorithm>
#include <thread>

#include "vitscope/image/threads.hpp"

namespace vitscope::cli {

namespace {

constexpr int kMaxThreads = 1024;

// hardware_concurrency() may report 0 when it cannot tell.
int core_count() {
  return std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kMaxThreads);
}

}  // namespace

void add_threads_option(CLI::App& command, int& threads) {
  threads = core_count();
  command
      .add_option("--threads", threads,
                  "threads for every parallel part, BLAS included (default: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(1, kMaxThreads));
}

void use_threads(int threads) { image::set_num_threads(threads); }

}  // namespace vitscope::cli
