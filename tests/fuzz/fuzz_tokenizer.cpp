// Fuzz target: a Hugging Face tokenizer.json (HfTokenizer::load). When it loads, a fixed string is
// encoded (with and without special-token matching) and the ids decoded, and a few id lookups are
// made.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "src/error.h"
#include "src/tokenizer/hf_tokenizer.h"
#include "fuzz_util.h"

namespace {

const char kText[] =
    "Hello, world! <|eot_id|><s> it's 1234 caf\xc3\xa9 \xe2\x96\x81x \xf0\x9f\x98\x80\n\t  end</s>";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<ringtune::HfTokenizer> tok;
  try {
    tok = ringtune::HfTokenizer::load(rt_fuzz::write_file("tokenizer.json", data, size));
  } catch (const ringtune::InputError&) {
    return 0;
  }
  try {
    for (bool special : {false, true}) {
      const ringtune::Encoding enc = tok->encode({{kText, special}});
      if (enc.ids.size() != enc.offsets.size()) std::abort();
      for (int64_t off : enc.offsets)
        if (off < 0 || off > static_cast<int64_t>(sizeof(kText) - 1)) std::abort();
      (void)tok->decode(enc.ids, false);
      (void)tok->decode(enc.ids, true);
    }
    const int32_t n = tok->vocab_size();
    for (int32_t id : {-1, 0, 1, n - 1, n, n + 7}) {
      (void)tok->id_to_piece(id);
      (void)tok->is_special(id);
    }
    (void)tok->decode({-5, 0, n - 1, n, 1 << 30}, false);
    (void)tok->token_to_id("Hello");
    (void)tok->model_unk_id();
    (void)tok->kind();
  } catch (const ringtune::InputError&) {
  }
  return 0;
}
