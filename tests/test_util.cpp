// Implementation of the test helpers (see test_util.h).
#include "test_util.h"

#include <sys/wait.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ringtune_test {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << content;
}

RunResult run_ringtune(const std::string& args) {
  TempDir tmp("ringtune-run");
  const std::string out = tmp.file("out"), err = tmp.file("err");
  const std::string cmd = std::string(RINGTUNE_BINARY) + " " + args + " >" + out + " 2>" + err +
                          " </dev/null";
  const int status = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

}  // namespace ringtune_test
