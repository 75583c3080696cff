#include "blas_threads.hpp"

#include <cblas.h>  // OpenBLAS's or BLIS's, as CMake's VITSCOPE_BLAS chose
#if defined(VITSCOPE_BLAS_BLIS)
#include <blis.h>
#endif

namespace vitscope::nn {

void set_blas_threads(int threads) {
#if defined(VITSCOPE_BLAS_BLIS)
  bli_thread_set_num_threads(threads);
#else
  openblas_set_num_threads(threads);
#endif
}

}  // namespace vitscope::nn
