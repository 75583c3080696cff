#pragma once
// SIGINT and SIGTERM during a long command: the handlers only note the signal, the command checks
// interrupted() between steps, finishes what it is writing and stops cleanly.

#include <stdexcept>
#include <string>

namespace vitscope::cli {

// Installs the handlers for SIGINT and SIGTERM, except for a signal the process was started with
// ignored (a background job of a script keeps ignoring Ctrl-C). The first signal is noted; the
// handler then resets itself, so a second one stops the process at once.
void watch_interrupts();

// The signal noted (SIGINT or SIGTERM), or 0.
int interrupted();

// "SIGINT", "SIGTERM", or "signal N".
std::string signal_name(int signal);

// Thrown by a command that stopped for a signal after leaving its outputs consistent; main prints
// what() on one line and exits with 128 + signal (130 for SIGINT, 143 for SIGTERM).
class Interrupted : public std::runtime_error {
 public:
  Interrupted(int signal, const std::string& message)
      : std::runtime_error(message), signal_(signal) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

}  // namespace vitscope::cli
