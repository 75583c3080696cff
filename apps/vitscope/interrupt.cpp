#include "interrupt.hpp"

#include <signal.h>

#include <atomic>

namespace vitscope::cli {

namespace {

// Written by the handler: only a lock-free atomic is async-signal-safe.
std::atomic<int> noted_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void note_signal(int signal) {
  int none = 0;
  noted_signal.compare_exchange_strong(none, signal);
}

void watch(int signal) {
  struct sigaction current {};
  if (sigaction(signal, nullptr, &current) == 0 && current.sa_handler == SIG_IGN) return;
  struct sigaction action {};
  action.sa_handler = note_signal;
  sigemptyset(&action.sa_mask);
  // SA_RESTART: reads and writes under way go on (a progress line is not lost to EINTR).
  // SA_RESETHAND: the next signal has its default effect.
  action.sa_flags = SA_RESTART | SA_RESETHAND;
  sigaction(signal, &action, nullptr);
}

}  // namespace

void watch_interrupts() {
  watch(SIGINT);
  watch(SIGTERM);
}

int interrupted() { return noted_signal.load(); }

std::string signal_name(int signal) {
  if (signal == SIGINT) return "SIGINT";
  if (signal == SIGTERM) return "SIGTERM";
  return "signal " + std::to_string(signal);
}

}  // namespace vitscope::cli
