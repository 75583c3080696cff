// vitscope: inspect, run and time torch.nn.Transformer model files.
//
// Exit codes: 0 success, 1 bad input (unreadable or malformed files, shapes that do not fit the
// model), 2 usage error (CLI11's parse errors and UsageError), 128 + the signal for a run stopped
// by SIGINT or SIGTERM (130, 143).

#include <malloc.h>

#include <iostream>
#include <new>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "interrupt.hpp"
#include "opencv_limit.hpp"

namespace {

constexpr int kBadInputExit = 1;
constexpr int kUsageExit = 2;

// Errors are reported on exactly one line, so scripts can rely on the format.
void report_error(const std::string& message) {
  std::string line = message;
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::cerr << "vitscope: error: " << line << std::endl;
}

int run(int argc, char** argv) {
  CLI::App app{"vitscope: PyTorch-exact torch.nn.Transformer inference"};
  app.set_version_flag("--version", VITSCOPE_VERSION);
  app.require_subcommand(1);
  const std::vector<vitscope::cli::Command> commands = {
      vitscope::cli::add_info_command(app),
      vitscope::cli::add_forward_command(app),
      vitscope::cli::add_bench_command(app),
      vitscope::cli::add_run_command(app),
      vitscope::cli::add_merge_command(app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version arrive here too, with exit code 0; CLI11 numbers its errors from 100.
    return app.exit(e) == 0 ? 0 : kUsageExit;
  }
  for (const vitscope::cli::Command& command : commands) {
    if (command.app->parsed()) command.run();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  vitscope::cli::keep_command_line(argv);
  // Keep multi-MB tensors in the heap instead of returning them to the kernel after every layer:
  // glibc's defaults made each layer page-fault its buffers in again (ViT-S b8: 379 -> 335 ms).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  try {
    return run(argc, argv);
  } catch (const vitscope::cli::Interrupted& e) {
    std::cerr << "vitscope: " << e.what() << std::endl;
    return 128 + e.signal();
  } catch (const vitscope::cli::UsageError& e) {
    report_error(e.what());
    return kUsageExit;
  } catch (const std::bad_alloc&) {
    report_error("out of memory (inputs or model too large)");
    return kBadInputExit;
  } catch (const std::exception& e) {
    report_error(e.what());
    return kBadInputExit;
  } catch (...) {
    report_error("unexpected failure");
    return kBadInputExit;
  }
}
