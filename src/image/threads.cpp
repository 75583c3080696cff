#include "vitscope/image/threads.hpp"

#include <opencv2/core/utility.hpp>

#include "vitscope/nn/parallel.hpp"

namespace vitscope::image {

void set_num_threads(int threads) {
  vitscope::set_num_threads(threads);
  cv::setNumThreads(vitscope::num_threads());  // the pool's count, clamped as it was
}

}  // namespace vitscope::image
