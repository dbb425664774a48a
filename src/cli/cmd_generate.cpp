// `ringtune generate`: greedy or sampled decoding with the KV cache, on a base model or with an
// adapter/checkpoint (--adapter), from ids, text, or a chat conversation (--messages) rendered with
// the prompt format exactly as training renders it and ended at the format's end-of-turn token.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/config/registry.h"
#include "src/data/prompt_format.h"
#include "src/data/sample_parser.h"
#include "src/error.h"
#include "src/io/hf_model.h"
#include "src/io/json_file.h"
#include "src/options/data_options.h"
#include "src/train/evaluate.h"
#include "src/train/model_setup.h"
#include "src/tokenizer/tokenizer.h"
#include "model/generate.h"
#include "model/llama.h"

namespace ringtune {

namespace {
std::vector<int64_t> parse_ids(const std::string& flag, const std::string& text, int64_t vocab) {
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
      throw InputError(flag + ": \"" + item + "\" is not an integer (expected e.g. 1,2,3)");
    if (v < 0 || v >= vocab)
      throw InputError(flag + ": id " + item + " outside the vocabulary [0, " +
                       std::to_string(vocab) + ")");
    ids.push_back(v);
  }
  if (ids.empty()) throw InputError(flag + ": empty list");
  return ids;
}

// --messages FILE: {"messages": [...]} or a bare array of messages (OpenAI roles). A final
// assistant message is dropped (it is the reference of a training sample), with a note.
Conversation read_messages(const std::string& path) {
  nlohmann::json j = read_json_file(path);
  if (j.is_array()) j = nlohmann::json{{"messages", j}};
  if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array())
    throw InputError(path + ": expected {\"messages\": [...]} or a JSON array of messages");
  if (j["messages"].empty()) throw InputError(path + ": no messages (an empty list); give at least one user message");
  const auto& last = j["messages"].back();
  const bool ends_with_assistant = last.is_object() && last.value("role", std::string()) == "assistant";
  SampleParser parser(DatasetFormat::openai, ends_with_assistant ? ConversationUse::training : ConversationUse::generation);
  Sample s;
  try {
    s = parser.parse(j.dump(), 1);
  } catch (const InvalidSample& e) {
    throw InputError(path + ": " + e.what());
  }
  if (ends_with_assistant) {
    s.messages.pop_back();
    spdlog::info("{}: the final assistant message is left out; the model writes that turn", path);
  }
  return s.messages;
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
               {"messages", "FILE", "chat JSON ({\"messages\": [...]} or an array): rendered with the prompt format\n"
                                     "plus trailing_assistant; prints only the reply, ended at the end-of-turn token", ""},
               {"format", "NAME", "--messages: llama3 | llama2 | mistral | chatml | none | auto (default: the\n"
                                  "checkpoint's training format, else auto from the model's tokenizer)", ""},
               {"adapter", "P", "PEFT adapter dir, checkpoint .h5 or training output_dir to apply", ""},
               {"stop-ids", "IDS", "comma-separated ids that end generation (kept in the output)", ""},
               {"no-cache", "", "recompute the whole sequence at each step (reference path)", ""},
               {"dtype", "TYPE", "float32 | bfloat16 | float16", "float32"},
               {"device", "DEV", "cpu, cuda, cuda:N, or auto (a GPU when one is visible)", "cpu"}});
  if (!p.parse(args)) return 0;
  GenerateOptions opt;  // the numeric options are checked before the model loads
  opt.max_new_tokens = p.get_int("max-new-tokens");
  opt.temperature = p.get_double("temperature");
  opt.top_p = p.get_double("top-p");
  opt.seed = static_cast<uint64_t>(p.get_int("seed"));
  opt.use_cache = !p.flag("no-cache");
  if (opt.max_new_tokens < 0) throw InputError("--max-new-tokens must be >= 0");
  if (opt.temperature < 0) throw InputError("--temperature must be >= 0");
  if (!(opt.top_p > 0 && opt.top_p <= 1)) throw InputError("--top-p must be in (0, 1]");
  const std::string model_dir = p.get("model");
  if (static_cast<int>(p.has("prompt")) + p.has("prompt-ids") + p.has("messages") > 1)
    throw InputError("ringtune generate: give one of --prompt, --prompt-ids, --messages");
  if (p.has("format") && !p.has("messages")) throw InputError("ringtune generate: --format applies to --messages only");
  ModelOptions mo;
  mo.base_dir = model_dir;
  mo.dtype = p.get("dtype");
  mo.device = resolve_device(p.get("device"));
  if (p.has("adapter")) mo.adapter = p.get("adapter");
  // The prompt is made and checked against config.json before the weights load (seconds to
  // minutes for a large model), except a conversation in the format stored with --adapter.
  const LlamaConfig cfg = read_hf_config(model_dir);
  std::unique_ptr<Tokenizer> tok;
  if (p.has("tokenizer")) {
    tok = load_tokenizer(p.get("tokenizer"));
  } else if (std::filesystem::exists(model_dir + "/tokenizer.json") ||
             std::filesystem::exists(model_dir + "/tokenizer.model")) {
    tok = load_tokenizer(model_dir);
  }
  std::vector<int64_t> prompt;
  Conversation conversation;
  if (p.has("messages")) {
    if (!tok) throw InputError(model_dir + ": --messages needs a tokenizer (none in the model directory; pass --tokenizer)");
    conversation = read_messages(p.get("messages"));
  } else if (p.has("prompt")) {
    if (!tok) throw InputError(model_dir + ": --prompt needs a tokenizer (none in the model directory; pass --tokenizer)");
    if (tok->special_ids().bos >= 0) prompt.push_back(tok->special_ids().bos);
    for (int32_t id : tok->encode(p.get("prompt"), false)) prompt.push_back(id);
    check_token_ids(prompt, cfg.vocab_size, "--prompt");
  } else if (p.has("prompt-ids")) {
    prompt = parse_ids("--prompt-ids", p.get("prompt-ids"), cfg.vocab_size);
  } else {
    if (cfg.bos_token_id < 0) throw InputError(model_dir + "/config.json: no bos_token_id; pass --prompt-ids");
    prompt = {cfg.bos_token_id};
  }
  if (p.has("stop-ids")) opt.stop_ids = parse_ids("--stop-ids", p.get("stop-ids"), cfg.vocab_size);
  const auto check_room = [&] {
    if (static_cast<int64_t>(prompt.size()) >= cfg.max_position_embeddings)
      throw InputError("the prompt is " + std::to_string(prompt.size()) + " tokens; " + model_dir +
                       "/config.json: max_position_embeddings " + std::to_string(cfg.max_position_embeddings) +
                       " leaves no room to generate");
  };
  // --messages: rendered with the prompt format (the checkpoint's own, when --adapter has one and
  // no --format is given), ended at the format's end-of-turn token.
  std::shared_ptr<const ChatRenderer> format;
  std::unique_ptr<DataPipeline> stored_pipe;  // keeps the tokenizer of a stored format alive
  std::vector<int64_t> turn_end;
  const auto render = [&](const AdapterInfo* adapter) {
    std::string fmt = p.has("format") ? p.get("format") : "";
    bool allow_special = false;
    if (fmt.empty() && adapter && !adapter->config_yaml.empty()) {
      try {  // the format the checkpoint was trained with
        const Config stored = load_config_from_string(adapter->config_yaml, {}, adapter->file + " (stored config)");
        stored_pipe = std::make_unique<DataPipeline>(make_data_pipeline(stored));
        format = stored_pipe->renderer;
        allow_special = stored_pipe->options.allow_special_tokens_in_content;
        spdlog::info("prompt format: {} (from {})", format->describe(), adapter->file);
      } catch (const InputError& e) {
        spdlog::warn("cannot use the prompt format stored in {} ({}); using auto", adapter->file, e.what());
      }
    }
    if (!format) {
      if (fmt.empty()) fmt = "auto";
      try {
        format = resolve_renderer(fmt, model_dir, *tok);
      } catch (const InputError& e) {
        throw InputError("--format " + fmt + ": " + e.what());
      }
      spdlog::info("prompt format: {}", format->describe());
    }
    const GenerationPrompt gp = generation_prompt(*tok, *format, conversation, allow_special);
    prompt = gp.ids;
    turn_end = end_of_turn_ids(*tok, *format);
    check_token_ids(prompt, cfg.vocab_size, "--messages");
    check_room();
  };
  const bool render_after_load = p.has("messages") && !p.has("format") && p.has("adapter");
  if (p.has("messages") && !render_after_load) render(nullptr);
  check_room();

  const ModelSetup setup = setup_model(mo);
  LlamaForCausalLM model = setup.model;
  if (p.has("adapter")) spdlog::info("applied {}", setup.adapter.describe());
  model->eval();
  if (render_after_load) render(&setup.adapter);
  opt.stop_ids.insert(opt.stop_ids.end(), turn_end.begin(), turn_end.end());
  const auto seq = generate(model, prompt, opt);
  if (p.has("messages")) {  // the reply only, as `eval` compares it
    const std::vector<int64_t> reply(seq.begin() + static_cast<std::ptrdiff_t>(prompt.size()), seq.end());
    std::cout << reply_text(*tok, *format, reply, opt.stop_ids) << std::endl;
    const bool stopped = !reply.empty() && std::find(opt.stop_ids.begin(), opt.stop_ids.end(), reply.back()) != opt.stop_ids.end();
    spdlog::info("generated {} tokens after a {}-token prompt{}", reply.size(), prompt.size(),
                 stopped ? ", ended at the end-of-turn token" : " (no end-of-turn token)");
    return 0;
  }
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
