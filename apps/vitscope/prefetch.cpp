#include "prefetch.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>

namespace vitscope::cli {

Prefetcher::Prefetcher(std::vector<std::filesystem::path> paths, image::LoadLimits limits,
                       std::size_t ahead)
    : paths_(std::move(paths)), limits_(limits), ahead_(ahead) {
  if (ahead_ > 0) worker_ = std::thread([this] { load_all(); });
}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  if (worker_.joinable()) worker_.join();
}

Prefetched Prefetcher::next() {
  if (ahead_ == 0) return load(next_++);
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [this] { return !ready_.empty(); });
  Prefetched item = std::move(ready_.front());
  ready_.pop_front();
  changed_.notify_all();
  return item;
}

void Prefetcher::load_all() {
  for (std::size_t i = 0; i < paths_.size(); ++i) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [this] { return stop_ || ready_.size() < ahead_; });
      if (stop_) return;
    }
    Prefetched item = load(i);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.push_back(std::move(item));
    }
    changed_.notify_all();
  }
}

Prefetched Prefetcher::load(std::size_t index) const {
  Prefetched item;
  item.index = index;
  const auto start = std::chrono::steady_clock::now();
  try {
    item.rgb = image::load_image(paths_[index].string(), limits_);
  } catch (const std::exception& e) {
    item.error = e.what();
  }
  item.load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return item;
}

}  // namespace vitscope::cli
