// Model options from a Config; see model_options.h.
#include "src/options/model_options.h"

#include <stdexcept>

#include "src/config/registry.h"

namespace ringtune {

LoraOptions lora_options_from_config(const Config& c) {
  LoraOptions o;
  o.r = c.get_int("lora_config.r");
  o.lora_alpha = c.get_double("lora_config.lora_alpha");
  o.lora_dropout = c.get_double("lora_config.lora_dropout");
  o.target_modules = c.get_strings("lora_config.target_modules");
  o.use_rslora = c.get_bool("lora_config.use_rslora");
  o.bias = c.get_string("lora_config.bias");
  o.modules_to_save = c.get_strings("lora_config.modules_to_save");
  o.init_lora_weights = c.get_string("lora_config.init_lora_weights");
  o.seed = static_cast<uint64_t>(c.get_int("seed"));
  try {
    validate_lora_options(o);
  } catch (const std::invalid_argument& e) {
    KeyOrigins(c).fail("lora_config.r", e.what());
  }
  return o;
}

std::optional<LoraOptions> lora_options_if_set(const Config& c) {
  if (!c.is_set("lora_config.r")) return std::nullopt;
  return lora_options_from_config(c);
}

ModelOptions model_options_from_config(const Config& c, bool training) {
  ModelOptions o;
  o.origins = KeyOrigins(c);
  o.base_dir = c.get_string("initial_base_model_ckpt_path");
  o.dtype = c.get_string("dtype");
  o.context_length = c.get_int("context_length");
  o.quantization = c.get_string("quantization");  // load_in_4bit / adapter: qlora decide its default
  if (!training) return o;
  o.training = true;
  if (c.is_set("initial_adapter_model_ckpt_path")) {
    o.adapter = c.get_string("initial_adapter_model_ckpt_path");
    o.adapter_from_config = true;
  }
  o.lora = lora_options_if_set(c);
  o.seed = static_cast<uint64_t>(c.get_int("seed"));
  o.gradient_checkpointing = c.get_bool("gradient_checkpointing");
  if (c.is_set("no_gradient_checkpoint") && !c.is_explicit("gradient_checkpointing"))
    o.gradient_checkpointing = !c.get_bool("no_gradient_checkpoint");
  return o;
}

}  // namespace ringtune
