// EvalOptions from a Config; see eval_options.h.
#include "src/options/eval_options.h"

#include "src/config/registry.h"
#include "src/options/data_options.h"

namespace ringtune {

EvalOptions eval_options_from_config(const Config& c) {
  EvalOptions o;
  o.config_name = c.source_name();
  o.output_dir = c.get_string("output_dir");
  o.model = model_options_from_config(c, /*training=*/false);
  if (!c.is_explicit("dtype")) o.model.dtype = "float32";  // evaluation defaults to full precision
  o.data = data_spec_from_config(c);
  if (c.is_set("valid_path")) o.valid_path = c.get_string("valid_path");
  o.test_key = c.is_set("test_path") ? "test_path" : "valid_path";
  if (c.is_set(o.test_key)) o.test_path = c.get_string(o.test_key);
  o.packing = c.get_bool("packing") && !c.is_set("padding");  // llmforge padding: no packing
  o.seed = static_cast<uint64_t>(c.get_int("seed"));
  o.batch_size = c.get_int("eval_batch_size_per_device");
  o.exact_match = c.get_string("eval.generation") == "exact_match";
  o.max_new_tokens = c.get_int("eval.max_new_tokens");
  return o;
}

}  // namespace ringtune
