#pragma once
// OpenCV's own cap on the size of the images it decodes. OpenCV 4.6 reads
// OPENCV_IO_MAX_IMAGE_PIXELS once, when libopencv_imgcodecs is loaded (before main), so a process
// can only change its own cap by starting again with the variable set.

#include <cstdint>

namespace vitscope::cli {

// main hands over its argv before anything else, for restart_with_opencv_limit to restart with.
void keep_command_line(char** argv);

// Makes OpenCV refuse images over max_pixels before allocating them, in this process: when
// OPENCV_IO_MAX_IMAGE_PIXELS is unset, not a plain number, or higher than max_pixels (a lower one
// stays), sets it and replaces the process with vitscope and the same arguments (execv of the
// executable /proc/self/exe names). The restarted process never restarts again. Call it before
// printing anything
// or installing signal handlers. Returns when nothing needs changing or the restart fails; then
// load_image's own pixel checks still hold (for formats other than PNG and JPEG, after decoding).
void restart_with_opencv_limit(std::uint64_t max_pixels);

}  // namespace vitscope::cli
