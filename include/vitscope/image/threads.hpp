#pragma once
// Threads for the image layer: OpenCV (resizing, colour maps, encoding) has a pool of its own,
// sized to the cores, beside vitscope's pool and the BLAS library's (nn/parallel.hpp).

namespace vitscope::image {

// nn's set_num_threads(K) and OpenCV's thread count K, so K means K busy cores, never more.
void set_num_threads(int threads);

}  // namespace vitscope::image
