// `ringtune generate`: greedy or sampled decoding with the KV cache.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <sstream>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/error.h"
#include "src/io/hf_model.h"
#include "src/tokenizer/tokenizer.h"
#include "model/generate.h"
#include "model/llama.h"

namespace ringtune {

namespace {
std::vector<int64_t> parse_ids(const std::string& text, int64_t vocab) {
  std::vector<int64_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != item.size())
      throw InputError("--prompt-ids: \"" + item + "\" is not an integer (expected e.g. 1,2,3)");
    if (v < 0 || v >= vocab)
      throw InputError("--prompt-ids: id " + item + " outside the vocabulary [0, " +
                       std::to_string(vocab) + ")");
    ids.push_back(v);
  }
  if (ids.empty()) throw InputError("--prompt-ids: empty list");
  return ids;
}
}  // namespace

int cmd_generate(const Args& args) {
  ArgParser p("generate", "--model DIR [--prompt-ids 1,2,3] [options]",
              "Continues a prompt with the model's KV cache and prints the ids of the whole\n"
              "sequence (prompt first), comma-separated, on stdout; then, when a tokenizer is\n"
              "available, the decoded text on the following lines.",
              {{"model", "DIR", "Hugging Face model directory", ""},
               {"prompt-ids", "IDS", "comma-separated prompt token ids (default: the model's BOS)", ""},
               {"prompt", "TEXT", "prompt text, encoded with the tokenizer after its BOS", ""},
               {"tokenizer", "PATH", "tokenizer file or directory (default: the model directory's, if any)", ""},
               {"max-new-tokens", "N", "tokens to generate at most", "64"},
               {"temperature", "T", "0 for greedy; > 0 samples from softmax(logits / T)", "0"},
               {"top-p", "P", "nucleus sampling: smallest set of tokens with mass >= P", "1.0"},
               {"seed", "S", "sampling seed", "0"},
               {"stop-ids", "IDS", "comma-separated ids that end generation (kept in the output)", ""},
               {"no-cache", "", "recompute the whole sequence at each step (reference path)", ""},
               {"dtype", "TYPE", "float32 | bfloat16 | float16", "float32"},
               {"device", "DEV", "cpu, cuda, cuda:N", "cpu"}});
  if (!p.parse(args)) return 0;
  auto model = load_hf_model(p.get("model"), p.get("dtype"), p.get("device"));
  model->eval();
  const auto& cfg = model->config();
  std::vector<int64_t> prompt;
  std::unique_ptr<Tokenizer> tok;
  const std::string model_dir = p.get("model");
  if (p.has("tokenizer")) {
    tok = load_tokenizer(p.get("tokenizer"));
  } else if (std::filesystem::exists(model_dir + "/tokenizer.json") ||
             std::filesystem::exists(model_dir + "/tokenizer.model")) {
    tok = load_tokenizer(model_dir);
  }
  if (p.has("prompt") && p.has("prompt-ids"))
    throw InputError("ringtune generate: give --prompt or --prompt-ids, not both");
  if (p.has("prompt")) {
    if (!tok) throw InputError(model_dir + ": --prompt needs a tokenizer (none in the model directory; pass --tokenizer)");
    if (tok->special_ids().bos >= 0) prompt.push_back(tok->special_ids().bos);
    for (int32_t id : tok->encode(p.get("prompt"), false)) prompt.push_back(id);
    for (int64_t id : prompt)
      if (id >= cfg.vocab_size)
        throw InputError("--prompt: token id " + std::to_string(id) + " is outside the model's vocabulary of " +
                         std::to_string(cfg.vocab_size) + " (tokenizer and model do not match)");
  } else if (p.has("prompt-ids")) {
    prompt = parse_ids(p.get("prompt-ids"), cfg.vocab_size);
  } else {
    if (cfg.bos_token_id < 0)
      throw InputError(p.get("model") + "/config.json: no bos_token_id; pass --prompt-ids");
    prompt = {cfg.bos_token_id};
  }
  GenerateOptions opt;
  opt.max_new_tokens = p.get_int("max-new-tokens");
  opt.temperature = p.get_double("temperature");
  opt.top_p = p.get_double("top-p");
  opt.seed = static_cast<uint64_t>(p.get_int("seed"));
  opt.use_cache = !p.flag("no-cache");
  if (p.has("stop-ids")) opt.stop_ids = parse_ids(p.get("stop-ids"), cfg.vocab_size);
  if (opt.max_new_tokens < 0) throw InputError("--max-new-tokens must be >= 0");
  if (opt.temperature < 0) throw InputError("--temperature must be >= 0");
  if (!(opt.top_p > 0 && opt.top_p <= 1)) throw InputError("--top-p must be in (0, 1]");
  const auto seq = generate(model, prompt, opt);
  std::ostringstream out;
  for (size_t i = 0; i < seq.size(); ++i) out << (i ? "," : "") << seq[i];
  std::cout << out.str() << std::endl;
  if (tok) {  // the text of the whole sequence, special tokens included
    std::cout << tok->decode(std::vector<int32_t>(seq.begin(), seq.end())) << std::endl;
  }
  spdlog::info("generated {} tokens after a {}-token prompt", seq.size() - prompt.size(), prompt.size());
  return 0;
}

}  // namespace ringtune
