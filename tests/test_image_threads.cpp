// --threads K bounds OpenCV's pool as well as vitscope's.

#include <catch2/catch.hpp>
#include <opencv2/core/utility.hpp>

#include "vitscope/image/threads.hpp"
#include "vitscope/nn/parallel.hpp"

TEST_CASE("set_num_threads bounds vitscope's pool and OpenCV's", "[parallel]") {
  const int before = vitscope::num_threads();
  vitscope::image::set_num_threads(1);
  CHECK(vitscope::num_threads() == 1);
  CHECK(cv::getNumThreads() == 1);
  vitscope::image::set_num_threads(2);
  CHECK(vitscope::num_threads() == 2);
  CHECK(cv::getNumThreads() == 2);
  vitscope::image::set_num_threads(before);
}
