// `ringtune report OUTPUT_DIR`: OUTPUT_DIR/report.html from its metrics.jsonl (src/train/report.h).
#include <spdlog/spdlog.h>

#include <filesystem>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/error.h"
#include "src/train/report.h"  // defines: write_report

namespace fs = std::filesystem;

namespace ringtune {

int cmd_report(const Args& args) {
  ArgParser p("report", "OUTPUT_DIR",
              "Writes OUTPUT_DIR/report.html from a training run's metrics.jsonl: loss and validation\n"
              "loss, learning rate, gradient norm, tokens/s, MFU, the step-time breakdown and memory\n"
              "over steps, as inline SVG (one file, no script, nothing fetched).",
              {});
  if (!p.parse(args)) return 0;
  if (p.positional().size() != 1) throw InputError("ringtune report: expected one OUTPUT_DIR; see --help");
  const std::string dir = p.positional()[0];
  if (!fs::is_directory(dir)) throw InputError(dir + ": not a directory (give a training output_dir)");
  const std::string out = write_report(dir);
  spdlog::info("report: {}", out);
  std::printf("%s\n", out.c_str());
  return 0;
}

}  // namespace ringtune
