// Fuzz target: a model directory's tokenizer_config.json, through everything that reads it:
// load_tokenizer (added_tokens_decoder, bos/eos/pad/unk tokens) over a fixed small tokenizer.json,
// read_chat_template (chat_template as a string or a list of named templates),
// chat_template_special_tokens, and when it has a template: ChatTemplateRenderer on a fixed
// conversation (parse, render for each train_on, end-of-turn ids, bos detection, tokenizing the
// rendered pieces).
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "src/data/chat_template.h"
#include "src/error.h"
#include "src/tokenizer/tokenizer.h"
#include "fuzz_util.h"
#include "tiny_tokenizer.h"

using namespace ringtune;

namespace {

struct Dirs {
  std::string model;  // tokenizer.json + the fuzzed tokenizer_config.json
  std::unique_ptr<Tokenizer> plain;  // the tokenizer without any tokenizer_config.json
};

const Dirs& dirs() {
  static const Dirs d = [] {
    Dirs out;
    out.model = rt_fuzz::scratch_dir() + "/model";
    std::filesystem::create_directories(out.model);
    rt_fuzz::write_file("model/tokenizer.json", rt_fuzz::tiny_tokenizer_json());
    out.plain = load_tokenizer(out.model + "/tokenizer.json");
    return out;
  }();
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Dirs& d = dirs();
  rt_fuzz::write_file("model/tokenizer_config.json", data, size);
  std::unique_ptr<Tokenizer> loaded;
  try {
    loaded = load_tokenizer(d.model);
  } catch (const InputError&) {
  }
  const Tokenizer& tok = loaded ? *loaded : *d.plain;
  try {
    const auto source = read_chat_template(d.model);
    jinja::Dict vars = chat_template_special_tokens(d.model, tok);
    if (!source) return 0;
    ChatTemplateRenderer renderer(*source, vars, tok);
    const Conversation conv = {{Role::system, "Be brief."},
                               {Role::user, "Hi <|eot_id|>"},
                               {Role::assistant, "Hello!"},
                               {Role::user, "caf\xc3\xa9?"},
                               {Role::assistant, "Yes."}};
    (void)renderer.turn_end_ids(tok);
    (void)renderer.writes_bos();
    (void)renderer.fingerprint();
    for (TrainOn on : {TrainOn::assistant, TrainOn::last_assistant, TrainOn::all}) {
      RenderOptions opts;
      opts.train_on = on;
      opts.add_generation_prompt = on == TrainOn::all;
      try {
        const RenderedPrompt p = renderer.render(conv, opts);
        const int64_t n = static_cast<int64_t>(p.text.size());
        std::vector<TextSegment> segs;
        for (const auto& piece : p.pieces) {
          if (piece.begin < 0 || piece.end < piece.begin || piece.end > n) std::abort();
          segs.push_back({std::string_view(p.text).substr(piece.begin, piece.end - piece.begin), piece.allow_special});
        }
        for (const auto& s : p.supervised)
          if (s.begin < 0 || s.end < s.begin || s.end > n) std::abort();
        (void)tok.encode(segs);
      } catch (const InvalidSample&) {
      }
    }
  } catch (const InputError&) {
  }
  return 0;
}
