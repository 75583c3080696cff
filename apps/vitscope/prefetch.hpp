#pragma once
// Images decoded on a background thread while the model runs on earlier ones: a folder run's
// loading overlaps its inference instead of adding to it.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <opencv2/core.hpp>

#include "vitscope/image/load.hpp"

namespace vitscope::cli {

struct Prefetched {
  std::size_t index = 0;  // position in the list given to the prefetcher
  cv::Mat rgb;            // as image::load_image returns it; empty on error
  std::string error;      // why it could not be loaded
  double load_s = 0;      // time spent decoding it
};

// Loads `paths` in order, at most `ahead` images ahead of the consumer, on a thread of its own.
// next() hands them out in the same order; the destructor stops the thread after the image it is
// decoding. With ahead = 0 there is no thread (a run held to --threads 1): next() decodes.
class Prefetcher {
 public:
  Prefetcher(std::vector<std::filesystem::path> paths, image::LoadLimits limits, std::size_t ahead);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Blocks until the next image is decoded. Call at most paths.size() times.
  Prefetched next();

 private:
  void load_all();
  Prefetched load(std::size_t index) const;

  std::vector<std::filesystem::path> paths_;
  image::LoadLimits limits_;
  std::size_t ahead_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Prefetched> ready_;
  bool stop_ = false;
  std::size_t next_ = 0;  // without a thread: the next index next() decodes
  std::thread worker_;
};

}  // namespace vitscope::cli
