// The thread pool every parallel part uses: each index once, errors passed on, one level deep.

#include <atomic>
#include <stdexcept>
#include <vector>

#include <catch2/catch.hpp>

#include "vitscope/nn/parallel.hpp"

namespace {

// Restores the thread count the tests started with.
struct ThreadsGuard {
  int before = vitscope::num_threads();
  ~ThreadsGuard() { vitscope::set_num_threads(before); }
};

}  // namespace

TEST_CASE("parallel_for visits every index once, in disjoint chunks", "[parallel]") {
  ThreadsGuard guard;
  const int threads = GENERATE(1, 2, 3);
  vitscope::set_num_threads(threads);
  const std::size_t count = GENERATE(1, 7, 1000);
  const std::size_t grain = GENERATE(1, 16);
  std::vector<std::atomic<int>> visits(count);
  vitscope::parallel_for(count, grain, [&](std::size_t begin, std::size_t end) {
    CHECK(begin < end);
    for (std::size_t i = begin; i < end; ++i) visits[i] += 1;
  });
  for (std::size_t i = 0; i < count; ++i) REQUIRE(visits[i] == 1);
}

TEST_CASE("parallel_for rethrows a chunk's exception after every chunk ran", "[parallel]") {
  ThreadsGuard guard;
  vitscope::set_num_threads(2);
  std::atomic<std::size_t> done{0};
  CHECK_THROWS_AS(vitscope::parallel_for(100, 1,
                                         [&](std::size_t begin, std::size_t end) {
                                           done += end - begin;
                                           if (begin == 50) throw std::runtime_error("chunk 50");
                                         }),
                  std::runtime_error);
  CHECK(done == 100);
}

TEST_CASE("a parallel_for inside another runs inline", "[parallel]") {
  ThreadsGuard guard;
  vitscope::set_num_threads(2);
  std::atomic<int> nested_inline{0};
  vitscope::parallel_for(4, 1, [&](std::size_t, std::size_t) {
    CHECK(vitscope::in_parallel_region());
    vitscope::parallel_for(8, 1, [&](std::size_t begin, std::size_t end) {
      if (begin == 0 && end == 8) nested_inline += 1;  // one chunk: the whole range, inline
    });
  });
  CHECK(nested_inline == 4);
  CHECK_FALSE(vitscope::in_parallel_region());
}

TEST_CASE("a parallel_for of one chunk leaves the pool to the parallel_fors inside it", "[parallel]") {
  ThreadsGuard guard;
  vitscope::set_num_threads(2);
  std::atomic<int> nested_chunks{0};
  vitscope::parallel_for(1, 1, [&](std::size_t, std::size_t) {
    CHECK_FALSE(vitscope::in_parallel_region());
    vitscope::parallel_for(8, 1, [&](std::size_t begin, std::size_t end) {
      CHECK(vitscope::in_parallel_region());
      nested_chunks += static_cast<int>(end - begin == 1);
    });
  });
  CHECK(nested_chunks == 8);  // chunks of one, on the pool, not the whole range inline
}
