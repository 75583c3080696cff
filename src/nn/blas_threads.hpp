#pragma once
// The BLAS library's own thread count (internal): set with the pool's by set_num_threads, and
// dropped to 1 by the kernels while they run BLAS calls inside the pool's threads.

namespace vitscope::nn {

void set_blas_threads(int threads);

}  // namespace vitscope::nn
