// Fuzz target: the Jinja engine (src/template/): the input is a chat template's source; it is
// parsed and, when it parses, rendered with a small fixed conversation and the variables
// transformers passes (as ChatTemplateRenderer does). The render limits are lowered from their
// defaults so that one input stays fast; the limits themselves are what stops a template.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "src/template/template.h"

namespace jinja = ringtune::jinja;

namespace {

jinja::Value message(const char* role, const char* content, int32_t origin) {
  return jinja::Value(jinja::Dict{{"role", jinja::Value(role)},
                                  {"content", jinja::Value(jinja::TString(content, origin))}});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source(reinterpret_cast<const char*>(data), size);
  jinja::Template t;
  try {
    t = jinja::Template::parse(source);
  } catch (const jinja::TemplateError&) {
    return 0;
  }
  static const jinja::List messages = {
      message("system", "Be brief.", 0), message("user", "Hi {{ there }} <|eot_id|>", 1),
      message("assistant", "Hello!\n", 2), message("user", "caf\xc3\xa9 \xf0\x9f\x98\x80", 3)};
  for (bool add_generation_prompt : {false, true}) {
    const jinja::Dict ctx = {{"messages", jinja::Value(messages)},
                             {"tools", jinja::Value::none()},
                             {"documents", jinja::Value::none()},
                             {"add_generation_prompt", jinja::Value(add_generation_prompt)},
                             {"bos_token", jinja::Value("<s>")},
                             {"eos_token", jinja::Value("</s>")}};
    jinja::RenderLimits limits;
    limits.max_output_bytes = int64_t{1} << 20;
    limits.max_loop_iterations = 20000;
    try {
      const jinja::RenderResult r = t.render(ctx, limits);
      const size_t n = r.text.str().size();
      for (const auto& [b, e] : r.generation)
        if (b > e || e > n) std::abort();
      size_t pos = 0;  // origin spans: sorted, disjoint, non-empty, inside the text
      for (const auto& sp : r.text.spans()) {
        if (sp.begin < pos || sp.end <= sp.begin || sp.end > n || sp.origin < 0 || sp.origin > 3) std::abort();
        pos = sp.end;
      }
    } catch (const jinja::TemplateError&) {
    }
  }
  return 0;
}
