#pragma once
// vitscope's one level of threading: a small persistent pool that every parallel part of the
// library uses (attention over batch x heads x query blocks, GEMMs over column blocks,
// element-wise work over row blocks). set_num_threads(K) bounds all of them, and the BLAS
// library's own threads too (image::set_num_threads adds OpenCV's), so --threads K means K busy
// cores, never more.

#include <cstddef>
#include <functional>

namespace vitscope {

// K >= 1 threads for every later parallel part (the caller's thread counts as one). Also sets
// the BLAS library's thread count to K. Default: the number of cores.
void set_num_threads(int threads);
int num_threads();

// Calls body(begin, end) over disjoint chunks covering [0, count), each at least `grain` long
// (but the last), on up to num_threads() threads, and returns when all are done. Runs inline on
// the calling thread when count is small, when called from inside another parallel_for (one
// level only), or when another thread is using the pool. A parallel_for of a single chunk is not
// a level: the parallel_fors inside it still use the pool. Exceptions thrown by body are rethrown
// (the first one) after every chunk has finished.
void parallel_for(std::size_t count, std::size_t grain,
                  const std::function<void(std::size_t begin, std::size_t end)>& body);

// Whether the calling thread is running inside a parallel_for chunk.
bool in_parallel_region();

}  // namespace vitscope
