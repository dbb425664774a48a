// TrainOptions from a Config; see train_options.h.
#include "src/options/train_options.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "src/config/byte_size.h"
#include "src/config/registry.h"
#include "src/file_kind.h"  // defines: data_file_problem
#include "src/options/data_options.h"

namespace ringtune {

TrainOptions train_options_from_config(const Config& c) {
  TrainOptions o;
  o.config_yaml = c.dump_yaml();
  o.origins = KeyOrigins(c);
  o.output_dir = c.get_string("output_dir");

  o.model = model_options_from_config(c, /*training=*/true);
  if (o.model.dtype == "float16")
    o.origins.fail("dtype", "float16 training needs loss scaling (its gradients underflow), which ringtune does not do; "
                            "use bfloat16 (float32's range, the same memory; parameters keep float32 masters) or "
                            "float32");
  o.model_name = c.is_set("model_id") ? c.get_string("model_id") : o.model.base_dir;

  o.data = data_spec_from_config(c);
  o.train_path = c.get_string("train_path");
  if (c.is_set("valid_path")) o.valid_path = c.get_string("valid_path");
  for (const auto& [key, path] : {std::pair<const char*, const std::string&>{"train_path", o.train_path},
                                   {"valid_path", o.valid_path}}) {  // checked now, before the model loads
    if (path.empty()) continue;
    // A directory, FIFO or device (/dev/zero) would block or be read for ever: data is a file.
    const std::string problem = data_file_problem(path);
    if (!problem.empty()) o.origins.fail(key, path + ": " + problem);
  }
  o.packing = c.get_bool("packing");
  if (c.is_set("padding")) {  // llmforge: no packing, batches padded to their longest or to context_length
    o.packing = false;
    o.pad_to_longest = c.get_string("padding") == "longest";
  }
  o.seed = static_cast<uint64_t>(c.get_int("seed"));

  const std::string micro = c.get_string("train_batch_size_per_device");
  o.micro_batch = micro == "auto" ? 0 : std::stoll(micro);  // validated at load
  if (c.is_set("memory_budget")) o.memory_budget = parse_bytes(c.get_string("memory_budget"));
  if (c.is_set("global_batch_size")) o.global_batch = c.get_int("global_batch_size");
  if (c.is_set("gradient_accumulation_steps")) o.accumulation = c.get_int("gradient_accumulation_steps");
  if (c.is_set("max_steps")) o.max_steps = c.get_int("max_steps");
  o.num_epochs = c.get_int("num_epochs");
  o.most_epochs = static_cast<int64_t>(*c.registry().at("num_epochs").max_value);
  // llmforge: num_devices GPUs each take train_batch_size_per_device per micro-step, so its global
  // batch is fixed by the config; ringtune keeps that batch on any number of ranks.
  if (c.is_set("num_devices") && o.global_batch == 0)
    o.global_batch = o.micro_batch * o.accumulation * c.get_int("num_devices");
  if (c.is_set("min_update_steps") && !c.is_explicit("num_epochs") && !c.is_set("max_steps"))
    o.min_update_steps = c.get_int("min_update_steps");

  o.adamw.beta1 = c.get_double("adam_beta1");
  o.adamw.beta2 = c.get_double("adam_beta2");
  o.adamw.eps = c.get_double("adam_epsilon");
  o.adamw.weight_decay = c.get_double("weight_decay");
  o.adamw.eight_bit = c.get_string("optimizer").find("8bit") != std::string::npos;  // optim decides its default
  o.learning_rate = c.get_double("learning_rate");
  o.lr_schedule = c.get_string("lr_scheduler_type");
  o.warmup_steps = c.get_int("num_warmup_steps");
  o.max_grad_norm = c.get_double("max_grad_norm");
  o.on_nonfinite = c.get_string("on_nonfinite");

  o.eval_steps = c.get_int("eval_steps");
  o.eval_batch = c.get_int("eval_batch_size_per_device");
  o.checkpoint_every = c.get_int("checkpoint_every_n_steps");
  const std::string freq = "checkpoint_and_evaluation_frequency";
  if (c.is_set(freq + ".unit")) {
    const int64_t n = c.get_int(freq + ".frequency");
    if (c.get_string(freq + ".unit") == "steps") o.eval_steps = o.checkpoint_every = n;
    else o.every_n_epochs = n;
  }
  if (c.is_set("checkpoint_every_n_epochs")) o.every_n_epochs = c.get_int("checkpoint_every_n_epochs");
  o.checkpoints_to_keep = c.get_int("num_checkpoints_to_keep");
  o.resume = c.get_string("resume");
  if (o.resume != "auto" && o.resume != "none") {  // checked now, before any data is prepared
    std::error_code ec;
    if (!std::filesystem::exists(o.resume, ec))
      o.origins.fail("resume", o.resume + ": no such checkpoint file (or use auto / none)");
    if (!std::filesystem::is_regular_file(o.resume, ec))
      o.origins.fail("resume", o.resume + ": not a checkpoint file (a .h5 file under output_dir/checkpoints)");
    std::ifstream in(o.resume, std::ios::binary);
    char sig[8] = {0};
    in.read(sig, 8);
    if (!in || std::memcmp(sig, "\x89HDF\r\n\x1a\n", 8) != 0)
      o.origins.fail("resume", o.resume + ": not a ringtune checkpoint (not an HDF5 file)");
  }

  o.device = c.get_string("device");
  o.backend = c.get_string("distributed.backend");
  o.zero_stage = static_cast<int>(c.get_int("distributed.zero_stage"));
  o.timeout_s = c.get_double("distributed.timeout_s");
  // An llmforge DeepSpeed config asks for sharded optimizer state: ZeRO-1 is what ringtune has.
  if (c.is_set("deepspeed") && !c.is_explicit("distributed.zero_stage")) o.zero_stage = 1;
  o.peak_flops = c.get_double("peak_flops");
  o.log_level = c.get_string("logging.level");
  o.per_rank_log_files = c.get_bool("logging.per_rank_files");
  return o;
}

}  // namespace ringtune
