// Chat data preparation with a model's own Jinja chat template vs the equivalent built-in preset:
// 10 000 generated conversations (a system message in half of them, 1-3 user/assistant
// exchanges, 8-60 words per message) go through DatasetReader exactly as `ringtune prepare` and
// training read them (render, tokenize, loss mask, fidelity gate), once with the Llama 3
// template of the llama3-hf fixture's tokenizer_config.json (src/data/chat_template.h) and once
// with the `llama3` preset, which renders the same text for content without surrounding
// whitespace up to the last <|eot_id|>: this template then writes the assistant header even in
// training (it has no add_generation_prompt test), 4 tokens without loss that the preset leaves
// out. Each path runs twice (the first pass fills the BPE word cache); figures are from
// the second, on one thread, CPU time of this thread (fair on a shared machine) and wall time.
// Also printed: rendering alone (no tokenizer), and in how many samples the preset's ids and
// masks are the start of the template's, with what the template adds. Prints figures only.
//
//   ./build/bench/bench_chat_template [fixtures_dir (default ../shared/fixtures)] [conversations (10000)]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <time.h>
#include <unistd.h>

#include "src/data/chat_template.h"
#include "src/data/dataset.h"
#include "src/data/prompt_format.h"
#include "src/tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using namespace ringtune;

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Deterministic conversations in the OpenAI messages format, one JSON object per line.
std::string write_conversations(const fs::path& path, int count) {
  static const char* words[] = {
      "the", "model", "returns", "a", "list", "of", "calls", "weather", "in", "Paris", "tomorrow",
      "please", "convert", "this", "value", "to", "metres", "and", "explain", "why", "it", "works",
      "for", "each", "item", "set", "timer", "minutes", "book", "table", "two", "people", "at",
      "seven", "translate", "sentence", "into", "German", "summary", "report", "error", "line",
      "function", "argument", "JSON", "number", "city", "München", "café", "über", "résumé"};
  const size_t n_words = sizeof(words) / sizeof(words[0]);
  uint64_t state = 0x9E3779B97F4A7C15ULL;
  auto next = [&](uint64_t n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % n;
  };
  auto sentence = [&]() {
    const uint64_t n = 8 + next(53);
    std::string s;
    for (uint64_t i = 0; i < n; ++i) {
      if (i > 0) s += (next(9) == 0) ? ", " : " ";
      s += words[next(n_words)];
    }
    return s + ".";
  };
  std::ofstream out(path, std::ios::binary);
  size_t bytes = 0;
  for (int c = 0; c < count; ++c) {
    nlohmann::json messages = nlohmann::json::array();
    if (next(2) == 0) messages.push_back({{"role", "system"}, {"content", sentence()}});
    const uint64_t turns = 1 + next(3);
    for (uint64_t t = 0; t < turns; ++t) {
      messages.push_back({{"role", "user"}, {"content", sentence()}});
      messages.push_back({{"role", "assistant"}, {"content", sentence()}});
    }
    const std::string line = nlohmann::json{{"messages", messages}}.dump() + "\n";
    bytes += line.size();
    out << line;
  }
  return std::to_string(bytes / 1024) + " KiB";
}

struct PassResult {
  double cpu = 0, wall = 0;
  int64_t samples = 0, tokens = 0, supervised = 0;
  std::vector<EncodedSample> encoded;
};

PassResult read_all(const std::string& path, std::shared_ptr<const ChatRenderer> renderer,
                    const Tokenizer& tok, bool keep) {
  DataOptions o;
  o.context_length = 0;
  DatasetReader reader({path}, o, std::move(renderer), tok);
  PassResult r;
  const double c0 = thread_cpu_seconds(), w0 = wall_seconds();
  EncodedSample s;
  while (reader.next(s)) {
    ++r.samples;
    r.tokens += static_cast<int64_t>(s.ids.size());
    for (uint8_t m : s.loss_mask) r.supervised += m;
    if (keep) r.encoded.push_back(s);
  }
  r.cpu = thread_cpu_seconds() - c0;
  r.wall = wall_seconds() - w0;
  if (reader.report().invalid_total() > 0) {
    std::fprintf(stderr, "unexpected invalid samples:\n%s\n", reader.report().summary().c_str());
    std::exit(1);
  }
  return r;
}

// Rendering alone (no tokenizer): the conversations parsed once, then rendered for training.
double render_only(const std::vector<Conversation>& conversations, const ChatRenderer& renderer) {
  const double c0 = thread_cpu_seconds();
  size_t bytes = 0;
  for (const auto& c : conversations) bytes += renderer.render(c, RenderOptions{}).text.size();
  const double cpu = thread_cpu_seconds() - c0;
  if (bytes == 0) std::fprintf(stderr, "nothing rendered\n");
  return cpu;
}

std::vector<Conversation> parse_conversations(const std::string& path) {
  std::vector<Conversation> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    Conversation c;
    const nlohmann::json j = nlohmann::json::parse(line);
    for (const auto& m : j["messages"]) {
      const std::string role = m["role"];
      Message msg;
      msg.role = role == "system" ? Role::system : role == "user" ? Role::user : Role::assistant;
      msg.content = m["content"];
      c.push_back(std::move(msg));
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string fixtures = argc > 1 ? argv[1] : "../shared/fixtures";
  const int count = argc > 2 ? std::atoi(argv[2]) : 10000;
  const std::string model_dir = fixtures + "/tokenizers/llama3-hf";
  try {
    auto tok = load_tokenizer(model_dir);
    const auto source = read_chat_template(model_dir);
    if (!source) {
      std::fprintf(stderr, "%s: no chat template\n", model_dir.c_str());
      return 1;
    }
    const fs::path data = fs::temp_directory_path() /
                          ("ringtune-bench-chat-" + std::to_string(::getpid()) + ".jsonl");
    const std::string size = write_conversations(data, count);
    std::printf("conversations: %d (%s of JSONL), tokenizer %s, one thread\n", count, size.c_str(),
                model_dir.c_str());

    auto jinja = std::make_shared<ChatTemplateRenderer>(
        *source, chat_template_special_tokens(model_dir, *tok), *tok);
    auto preset = std::make_shared<PromptRenderer>(prompt_format_preset("llama3"),
                                                   "generation_config.prompt_format", "llama3");
    std::printf("jinja:  %s\npreset: %s\n", jinja->describe().c_str(), preset->describe().c_str());

    read_all(data.string(), jinja, *tok, false);  // warm the BPE cache
    const PassResult j = read_all(data.string(), jinja, *tok, true);
    read_all(data.string(), preset, *tok, false);
    const PassResult p = read_all(data.string(), preset, *tok, true);

    const auto conversations = parse_conversations(data.string());
    const double j_render = render_only(conversations, *jinja);
    const double p_render = render_only(conversations, *preset);
    fs::remove(data);

    // The template writes the assistant header after the last turn even in training (it has no
    // add_generation_prompt test); the preset stops at the last <|eot_id|>. So each sample of the
    // preset should be the start of the template's, and what the template adds should carry no loss.
    bool same = j.encoded.size() == p.encoded.size();
    size_t prefix_samples = 0, identical_samples = 0;
    int64_t added_tokens = 0, added_supervised = 0;
    std::set<std::vector<int32_t>> tails;
    for (size_t i = 0; same && i < j.encoded.size(); ++i) {
      const auto& a = j.encoded[i];
      const auto& b = p.encoded[i];
      const size_t n = b.ids.size();
      if (a.ids.size() < n || !std::equal(b.ids.begin(), b.ids.end(), a.ids.begin()) ||
          !std::equal(b.loss_mask.begin(), b.loss_mask.end(), a.loss_mask.begin()))
        continue;
      ++prefix_samples;
      identical_samples += a.ids.size() == n;
      added_tokens += static_cast<int64_t>(a.ids.size() - n);
      for (size_t k = n; k < a.loss_mask.size(); ++k) added_supervised += a.loss_mask[k] != 0;
      tails.insert(std::vector<int32_t>(a.ids.begin() + static_cast<std::ptrdiff_t>(n), a.ids.end()));
    }
    std::printf("\n%-34s %12s %12s %12s\n", "", "jinja", "preset", "jinja/preset");
    auto row = [](const char* what, double a, double b) {
      std::printf("%-34s %12.3f %12.3f %12.2fx\n", what, a, b, a / b);
    };
    row("prepare: CPU seconds", j.cpu, p.cpu);
    row("prepare: wall seconds", j.wall, p.wall);
    row("prepare: conversations / CPU s", j.samples / j.cpu, p.samples / p.cpu);
    row("render only: CPU seconds", j_render, p_render);
    std::printf("%-34s %12lld %12lld\n", "tokens", static_cast<long long>(j.tokens),
                static_cast<long long>(p.tokens));
    std::printf("%-34s %12lld %12lld\n", "supervised tokens", static_cast<long long>(j.supervised),
                static_cast<long long>(p.supervised));
    std::printf("samples whose preset ids and loss masks start the template's: %zu of %zu (identical: %zu)\n",
                prefix_samples, j.encoded.size(), identical_samples);
    std::printf("tokens the template adds after them: %lld (%lld supervised), %zu distinct tail(s)\n",
                static_cast<long long>(added_tokens), static_cast<long long>(added_supervised), tails.size());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_chat_template: %s\n", e.what());
    return 1;
  }
  return 0;
}
