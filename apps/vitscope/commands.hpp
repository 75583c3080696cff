#pragma once
// The vitscope subcommands. Each registers itself on the top-level app and hands back how to run
// it, so main can parse the whole command line first and report every usage error the same way.

#include <functional>
#include <stdexcept>

#include <CLI/CLI.hpp>

namespace vitscope::cli {

// A command line that parses but asks for something that cannot be done (a target mask without a
// target, a target for a model without a decoder): a usage error like CLI11's own, exit code 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Command {
  CLI::App* app;              // the subcommand, to tell whether it was given
  std::function<void()> run;  // valid once the command line has been parsed; throws on failure
};

Command add_info_command(CLI::App& app);
Command add_forward_command(CLI::App& app);
Command add_bench_command(CLI::App& app);
Command add_run_command(CLI::App& app);
Command add_merge_command(CLI::App& app);

}  // namespace vitscope::cli
