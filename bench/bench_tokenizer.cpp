// Encode throughput of the three fixture tokenizers (llama3-hf, mistral-hf, llama2-sp) on one
// thread, over ~5 MB of English text: the licence texts of /usr/share/common-licenses repeated
// (or, where that directory is missing, deterministic pseudo-English). The text is encoded one
// paragraph at a time, as training samples are. Two passes per tokenizer (the first fills the
// BPE word cache). MB/s from this thread's CPU time (fair on a shared machine) and from wall time.
// Prints figures only.
//
//   ./build/bench/bench_tokenizer [fixtures_dir (default ../shared/fixtures)] [megabytes (5)]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <time.h>

#include "src/tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Text

std::string licence_text() {
  const fs::path dir = "/usr/share/common-licenses";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return "";
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec)) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    text += buf.str();
    text += "\n\n";
  }
  return text;
}

// Deterministic pseudo-English: words drawn by a fixed LCG, sentences and paragraphs.
std::string generated_text(size_t bytes) {
  static const char* words[] = {
      "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be",
      "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have",
      "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has",
      "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "program",
      "software", "license", "distribution", "modified", "version", "terms", "conditions",
      "copyright", "warranty", "source", "code", "public", "general", "free", "permission"};
  const size_t n_words = sizeof(words) / sizeof(words[0]);
  uint64_t state = 0x2545F4914F6CDD1DULL;
  std::string text;
  size_t in_sentence = 0, in_paragraph = 0;
  while (text.size() < bytes) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    std::string w = words[(state >> 33) % n_words];
    if (in_sentence == 0) w[0] = static_cast<char>(w[0] - 'a' + 'A');
    text += w;
    if (++in_sentence >= 8 + (state >> 60)) {
      text += ". ";
      in_sentence = 0;
      if (++in_paragraph >= 5) {
        text += "\n\n";
        in_paragraph = 0;
      }
    } else {
      text += ' ';
    }
  }
  return text;
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

std::vector<std::string> paragraphs(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\n\n", pos);
    end = end == std::string::npos ? text.size() : end + 2;
    out.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // Default: ../shared/fixtures beside the checkout (found from this file's path; CMake compiles
  // it by absolute path).
  const std::string fixtures =
      argc > 1 ? std::string(argv[1])
               : (fs::path(__FILE__).parent_path() / "../../shared/fixtures")
                     .lexically_normal()
                     .string();
  const double megabytes = argc > 2 ? std::atof(argv[2]) : 5.0;
  const size_t target = static_cast<size_t>(megabytes * 1e6);

  std::string unit = licence_text();
  const char* source = "common-licenses";
  if (unit.empty()) {
    unit = generated_text(200000);
    source = "generated";
  }
  std::string text;
  while (text.size() < target) text += unit;
  const std::vector<std::string> parts = paragraphs(text);

  std::printf("text: %s, %.2f MB, %zu paragraphs\n", source, text.size() / 1e6, parts.size());
  std::printf("%-12s %8s %14s %14s %14s %10s\n", "tokenizer", "load_s", "pass1_cpu_MB/s",
              "pass2_cpu_MB/s", "pass2_wall_MB/s", "tokens");
  const char* names[] = {"llama3-hf", "mistral-hf", "llama2-sp/tokenizer.model"};
  for (const char* name : names) {
    const auto t0 = std::chrono::steady_clock::now();
    auto tok = ringtune::load_tokenizer(fixtures + "/tokenizers/" + name);
    const auto t1 = std::chrono::steady_clock::now();
    double cpu_mbps[2] = {0, 0}, wall_mbps[2] = {0, 0};
    size_t tokens = 0;
    for (int pass = 0; pass < 2; ++pass) {
      tokens = 0;
      const double c0 = thread_cpu_seconds();
      const auto w0 = std::chrono::steady_clock::now();
      for (const std::string& p : parts) tokens += tok->encode(p, false).size();
      const auto w1 = std::chrono::steady_clock::now();
      const double c1 = thread_cpu_seconds();
      cpu_mbps[pass] = text.size() / 1e6 / (c1 - c0);
      wall_mbps[pass] = text.size() / 1e6 / std::chrono::duration<double>(w1 - w0).count();
    }
    std::string label = name;
    label = label.substr(0, label.find('/'));
    std::printf("%-12s %8.3f %14.2f %14.2f %14.2f %10zu\n", label.c_str(),
                std::chrono::duration<double>(t1 - t0).count(), cpu_mbps[0], cpu_mbps[1],
                wall_mbps[1], tokens);
  }
  return 0;
}
