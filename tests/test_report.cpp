// Per-step observability: metrics.jsonl's time breakdown (parts within the step's interval, the
// checkpoint's time on the line after it, validation's on its own line), memory, and mfu checked
// against FLOPs per token counted here by hand from the model's shapes; `ringtune report` writes
// report.html whose SVG charts tests/check_report.py parses and maps back to the metrics; bad
// input to `report` exits 2.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "src/io/checkpoint.h"
#include "test_util.h"

using namespace ringtune_test;
namespace fs = std::filesystem;

namespace {

std::vector<nlohmann::json> metrics_lines(const std::string& out) {
  std::ifstream in(out + "/metrics.jsonl");
  std::vector<nlohmann::json> rows;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

struct ReportRun {
  TempDir dir{"ringtune-report"};
  std::string out;
  ReportRun() {
    // hidden 32, 2 layers, intermediate 64, 4 heads, 2 key/value heads, tied embeddings, vocab 32000
    write_tiny_llama(dir.file("base"), 32000, 32, 2, 3, fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
    write_file(dir.file("train.jsonl"), weather_chats(40));
    write_file(dir.file("valid.jsonl"), weather_chats(8));
    write_file(dir.file("cfg.yaml"),
               "initial_base_model_ckpt_path: " + dir.file("base") + "\ntrain_path: " + dir.file("train.jsonl") +
                   "\nvalid_path: " + dir.file("valid.jsonl") +
                   "\ndtype: float32\ncontext_length: 64\ngeneration_config:\n  prompt_format: llama2\n"
                   "learning_rate: 0.01\nglobal_batch_size: 4\ntrain_batch_size_per_device: 2\nnum_epochs: 1\n"
                   "seed: 3\npacking: false\ndevice: cpu\neval_steps: 3\ncheckpoint_every_n_steps: 2\n"
                   "peak_flops: 1.0e9\nlora_config:\n  r: 4\n  lora_alpha: 8\n  lora_dropout: 0\n"
                   "  target_modules: all-linear\n");
    out = dir.file("out");
  }
};

}  // namespace

TEST(Report, MetricsCarryTheStepTimeBreakdownMemoryAndMfu) {
  ReportRun w;
  auto r = run_ringtune("train " + w.dir.file("cfg.yaml") + " output_dir=" + w.out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto rows = metrics_lines(w.out);
  ASSERT_EQ(rows.size(), 10u);  // 40 samples / 4
  // FLOPs per token by hand: per layer q 32x32, k and v 32x16, o 32x32, gate/up/down 32x64 = 9 * 32^2
  // frozen weights, and the tied output layer 32000 x 32; LoRA r 4 on the seven: r * (in + out).
  const double h = 32, L = 2, V = 32000, rank = 4;
  const double frozen = L * 9 * h * h + V * h;
  const double trainable = L * rank * ((h + h) + (h + h / 2) * 2 + (h + h) + (h + 2 * h) * 3);
  ringtune::CheckpointState st;
  ASSERT_FALSE(ringtune::find_resume_checkpoint(w.out, st).empty());
  int64_t in_checkpoint = 0;
  for (const auto& [n, t] : st.trainable) in_checkpoint += t.numel();
  ASSERT_EQ(in_checkpoint, static_cast<int64_t>(trainable));  // the LoRA tensors the run trained
  for (const auto& m : rows) {
    const int64_t step = m["step"];
    const auto& ms = m["ms"];
    double parts = 0;
    for (const char* k : {"data", "forward", "backward", "comm", "optimizer", "eval", "checkpoint"}) {
      ASSERT_TRUE(ms.contains(k)) << k;
      EXPECT_GE(ms[k].get<double>(), 0) << k;
      parts += ms[k].get<double>();
    }
    EXPECT_LE(parts, ms["step"].get<double>() + 0.01) << "step " << step;
    EXPECT_GT(ms["forward"].get<double>(), 0);
    EXPECT_GT(ms["backward"].get<double>(), 0);
    // Validation after steps 3, 6, 9 and the last; the checkpoint of step s on line s + 1.
    EXPECT_EQ(ms["eval"].get<double>() > 0, step % 3 == 0 || step == 10) << "step " << step;
    EXPECT_EQ(ms["checkpoint"].get<double>() > 0, step > 1 && (step - 1) % 2 == 0) << "step " << step;
    const double per_token = 4 * frozen + 6 * trainable + 12 * L * h * m["seq_len"].get<double>();
    EXPECT_NEAR(m["mfu"].get<double>(), m["tokens_per_s"].get<double>() * per_token / 1e9, 1e-9 * per_token)
        << "step " << step;
    EXPECT_GT(m["rss_mib"].get<int64_t>(), 10);
    EXPECT_GE(m["peak_rss_mib"].get<int64_t>(), m["rss_mib"].get<int64_t>());
  }
  std::cout << "[ step 5 ] " << rows[4]["ms"].dump() << " mfu " << rows[4]["mfu"] << "\n";
}

TEST(Report, HtmlChartsMapBackToTheMetrics) {
  ReportRun w;
  ASSERT_EQ(run_ringtune("train " + w.dir.file("cfg.yaml") + " output_dir=" + w.out).exit_code, 0);
  auto r = run_ringtune("report " + w.out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, w.out + "/report.html\n");
  auto check = run_shell("python3 " + source_dir() + "/tests/check_report.py " + w.out);
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  std::cout << check.out;
  // The checker fails on a chart that does not match: shift one loss and see it refuse.
  std::string html = read_file(w.out + "/report.html");
  const size_t at = html.find("data-name=\"train loss\"");
  ASSERT_NE(at, std::string::npos);
  const size_t pts = html.find("points=\"", at) + 8;
  const size_t comma = html.find(',', pts);
  html.replace(comma + 1, 0, "1");  // the first point's y gains a leading 1 (100+ px lower)
  write_file(w.out + "/report.html", html);
  auto bad = run_shell("python3 " + source_dir() + "/tests/check_report.py " + w.out);
  EXPECT_NE(bad.exit_code, 0) << bad.out;
  EXPECT_NE(bad.out.find("series train loss: step 1 value"), std::string::npos) << bad.out;
}

TEST(Report, BadInputExitsTwo) {
  TempDir dir("ringtune-report-bad");
  auto none = run_ringtune("report " + dir.path());
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find(dir.file("metrics.jsonl") + ": cannot read"), std::string::npos) << none.err;
  write_file(dir.file("metrics.jsonl"), "{\"step\": 1, \"loss\": 2.0}\nnot json\n{\"step\": 3, \"loss\": 1.0}\n");
  auto torn = run_ringtune("report " + dir.path());
  EXPECT_EQ(torn.exit_code, 2);
  EXPECT_NE(torn.err.find(dir.file("metrics.jsonl") + ":2: not a JSON line"), std::string::npos) << torn.err;
  EXPECT_FALSE(fs::exists(dir.file("report.html")));
  // A torn last line (a run killed mid-write) is skipped.
  write_file(dir.file("metrics.jsonl"), "{\"step\": 1, \"loss\": 2.0}\n{\"step\": 2, \"lo");
  auto ok = run_ringtune("report " + dir.path());
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  auto missing = run_ringtune("report " + dir.file("nothing"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("not a directory"), std::string::npos) << missing.err;
}

// RINGTUNE_PROFILE=FILE:STEP writes libtorch's operator trace of that step, and
// bench/profile_step.py sums it by operator (the products of the step among the operators).
TEST(Report, ProfileOfOneStepIsATraceTheSummaryReads) {
  ReportRun w;
  const std::string trace = w.dir.file("step2.json");
  auto r = run_shell("RINGTUNE_PROFILE=" + trace + ":2 " + std::string(RINGTUNE_BINARY) + " train " +
                     w.dir.file("cfg.yaml") + " output_dir=" + w.out + " max_steps=3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("profiling step 2 into " + trace), std::string::npos) << r.err;
  ASSERT_TRUE(fs::exists(trace));
  auto s = run_shell("python3 " + source_dir() + "/bench/profile_step.py " + trace + " --top 40");
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_NE(s.out.find("traced span"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("aten::mm"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("SegmentCausalAttention"), std::string::npos) << s.out;
  // A file that cannot be written: one warning, the run goes on.
  fs::remove_all(w.out);
  r = run_shell("RINGTUNE_PROFILE=" + w.dir.file("no/such/dir/p.json") + ":2 " + std::string(RINGTUNE_BINARY) +
                " train " + w.dir.file("cfg.yaml") + " output_dir=" + w.out + " max_steps=3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("RINGTUNE_PROFILE: cannot write " + w.dir.file("no/such/dir/p.json") + ": step 2 is not profiled"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("Exception raised"), std::string::npos) << r.err;
}
