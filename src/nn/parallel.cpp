#include "vitscope/nn/parallel.hpp"

#include "blas_threads.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VITSCOPE_PAUSE() _mm_pause()
#else
#define VITSCOPE_PAUSE() std::this_thread::yield()
#endif

namespace vitscope {

namespace {

constexpr int kMaxThreads = 1024;
// How long an idle worker spins before it sleeps: forwards issue parallel regions a few hundred
// microseconds apart, and waking a sleeping thread costs tens of microseconds.
constexpr auto kSpin = std::chrono::microseconds(200);

thread_local bool t_in_region = false;

struct Job {
  const std::function<void(std::size_t, std::size_t)>* body = nullptr;
  std::size_t count = 0;
  std::size_t grain = 1;
  std::size_t chunks = 0;
  std::atomic<std::size_t> next{0};
  std::atomic<std::size_t> done{0};
  std::mutex error_mutex;
  std::exception_ptr error;

  // Runs chunks until none are left; returns after its last one.
  void work() {
    for (;;) {
      const std::size_t chunk = next.fetch_add(1, std::memory_order_relaxed);
      if (chunk >= chunks) return;
      const std::size_t begin = chunk * grain;
      const std::size_t end = std::min(count, begin + grain);
      try {
        (*body)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
      done.fetch_add(1, std::memory_order_acq_rel);
    }
  }
};

// Runs the whole range on the calling thread, marked as inside a region so that nested
// parallel_for calls stay inline too.
void run_inline(std::size_t count, const std::function<void(std::size_t, std::size_t)>& body) {
  const bool outer = t_in_region;
  t_in_region = true;
  try {
    body(0, count);
  } catch (...) {
    t_in_region = outer;
    throw;
  }
  t_in_region = outer;
}

class Pool {
 public:
  int threads() const { return threads_; }

  void set_threads(int threads) {
    std::lock_guard<std::mutex> use(use_mutex_);
    if (threads == threads_) return;
    stop_workers();
    threads_ = threads;
  }

  void run(std::size_t count, std::size_t grain,
           const std::function<void(std::size_t, std::size_t)>& body) {
    std::unique_lock<std::mutex> use(use_mutex_, std::try_to_lock);
    if (!use.owns_lock() || threads_ <= 1) {
      use.unlock();
      run_inline(count, body);
      return;
    }
    if (workers_.empty()) start_workers();
    auto job = std::make_shared<Job>();
    job->body = &body;
    job->count = count;
    job->grain = grain;
    job->chunks = (count + grain - 1) / grain;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    t_in_region = true;
    job->work();
    t_in_region = false;
    // Wait for chunks other threads took; a worker that wakes late finds none left.
    while (job->done.load(std::memory_order_acquire) < job->chunks) VITSCOPE_PAUSE();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_.reset();
    }
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void start_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = false;
    }
    // Each worker starts from the generation current now, so a job (or a stop) published before
    // it first runs is still seen as new.
    const std::uint64_t start = generation_.load(std::memory_order_acquire);
    for (int i = 1, n = threads_; i < n; ++i) {
      workers_.emplace_back([this, start] { worker_loop(start); });
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
  }

  void worker_loop(std::uint64_t seen) {
    t_in_region = true;
    for (;;) {
      const auto spin_until = std::chrono::steady_clock::now() + kSpin;
      int spins = 0;
      while (generation_.load(std::memory_order_acquire) == seen) {
        VITSCOPE_PAUSE();
        if (++spins % 64 == 0 && std::chrono::steady_clock::now() > spin_until) break;
      }
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] {
          return stopping_ || generation_.load(std::memory_order_acquire) != seen;
        });
        if (stopping_) return;
        seen = generation_.load(std::memory_order_acquire);
        job = job_;
      }
      if (job) job->work();
    }
  }

  std::atomic<int> threads_{
      std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kMaxThreads)};
  std::mutex use_mutex_;  // one parallel_for at a time uses the workers
  std::mutex mutex_;      // guards job_ and stopping_
  std::condition_variable wake_;
  std::atomic<std::uint64_t> generation_{0};
  std::shared_ptr<Job> job_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// Never destroyed: at exit the workers sleep (or spin) with no job, and the process ends them;
// joining them from a static destructor would make exit wait on threads it cannot see.
Pool& pool() {
  static Pool* instance = new Pool;
  return *instance;
}

}  // namespace

void set_num_threads(int threads) {
  threads = std::clamp(threads, 1, kMaxThreads);
  pool().set_threads(threads);
  nn::set_blas_threads(threads);
}

int num_threads() { return pool().threads(); }

bool in_parallel_region() { return t_in_region; }

void parallel_for(std::size_t count, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& body) {
  if (count == 0) return;
  grain = std::max<std::size_t>(grain, 1);
  if (t_in_region) {
    run_inline(count, body);
    return;
  }
  if (count <= grain) {
    // One chunk: nothing runs beside it, so the parallel_fors inside it may still use the pool.
    body(0, count);
    return;
  }
  pool().run(count, grain, body);
}

}  // namespace vitscope
