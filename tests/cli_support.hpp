#pragma once
// Shared by the tests that start vitscope's executables: quoting and running the CLI.

#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "support.hpp"

namespace vitscope::test {

// s as one /bin/sh word, whatever characters the temp or build paths hold.
inline std::string quote(const std::string& s) {
  std::string quoted = "'";
  for (char c : s) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

struct Run {
  int exit_code;
  std::string out;
  std::string err;
};

// Runs `vitscope <args>` (args already quoted as needed), capturing stdout and stderr. `before` is
// shell text put in front of the command: `VAR=value `, or `cd DIR && `.
inline Run run_cli(const std::string& args, const std::string& before = "") {
  TempDir dir;
  const std::string command = before + quote(VITSCOPE_CLI) + " " + args + " >" +
                              quote(dir.file("stdout")) + " 2>" + quote(dir.file("stderr"));
  const int status = std::system(command.c_str());
  INFO(command);
  REQUIRE(WIFEXITED(status));  // never killed by a signal
  return {WEXITSTATUS(status), read_bytes(dir.file("stdout")), read_bytes(dir.file("stderr"))};
}

}  // namespace vitscope::test
