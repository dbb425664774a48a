// `ringtune export`: a training checkpoint as a PEFT adapter directory or as a merged Hugging
// Face model directory (LoRA folded into the base weights; sharded with an index when large).
#include <stdexcept>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>

#include "model/llama.h"
#include "model/lora.h"
#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/config/registry.h"
#include "src/error.h"
#include "src/io/adapter_io.h"
#include "src/io/atomic_file.h"
#include "src/io/export.h"
#include "src/io/hf_model.h"
#include "src/io/checkpoint.h"
#include "src/train/model_setup.h"  // defines: resolve_device

namespace fs = std::filesystem;

namespace ringtune {

int cmd_export(const Args& args) {
  ArgParser p("export", "--checkpoint P --format peft|merged --output DIR",
              "Writes a checkpoint (a .h5 file, or an output_dir whose newest checkpoint is used)\n"
              "as a PEFT adapter (adapter_config.json + adapter_model.safetensors) or as a merged\n"
              "Hugging Face model directory that transformers, vLLM and llama.cpp's converters load.",
              {{"checkpoint", "P", "checkpoint file, or a training output_dir", ""},
               {"format", "FMT", "peft | merged", ""},
               {"output", "DIR", "directory to write (must not exist or be empty)", ""},
               {"shard-size-mb", "N", "merged: largest safetensors shard in MiB", "5120"},
               {"device", "DEV", "where LoRA is merged: cpu, cuda, cuda:N, or auto", "cpu"}});
  if (!p.parse(args)) return 0;
  const std::string format = p.get("format"), out = p.get("output");
  if (format != "peft" && format != "merged") throw InputError("--format must be peft or merged, got \"" + format + "\"");
  if (fs::exists(out) && !fs::is_empty(out)) throw InputError(out + ": --output exists and is not empty");
  const int64_t shard_mb = p.get_int("shard-size-mb");
  if (shard_mb <= 0) throw InputError("--shard-size-mb must be positive");
  CheckpointState st;
  const std::string path = read_checkpoint(p.get("checkpoint"), st);
  const Config cfg = load_config_from_string(st.config_yaml, {}, path + " (stored config)");
  const std::string base = cfg.get_string("initial_base_model_ckpt_path");
  check_checkpoint_base(st.base_hash, path, base);  // merged onto other weights, the result would be wrong silently
  const bool lora = cfg.is_set("lora_config.r");
  if (format == "peft" && !lora) throw InputError(path + ": a full fine-tuning checkpoint has no adapter; use --format merged");
  LlamaForCausalLM model = load_hf_model(base, cfg.get_string("dtype"), resolve_device(p.get("device")));
  LoraOptions lo;
  apply_checkpoint(model, st, path, &lo);
  model->eval();
  const std::string name = cfg.is_set("model_id") ? cfg.get_string("model_id") : base;
  // Built beside --output and renamed into place: a failure leaves nothing there.
  const fs::path parent = fs::path(out).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  ScratchDir tmp(out + ".tmp-export-");
  if (format == "peft") {
    write_peft_adapter(tmp.path(), model, lo, name);
  } else {
    if (lora) {
      if (st.base_hash.find("+nf4") != std::string::npos)
        spdlog::info("merging the adapter trained on the NF4-quantized base into the unquantized base weights of {}",
                     base);
      try {
        merge_lora(model);
      } catch (const std::invalid_argument& e) {
        throw InputError(path + ": --format merged: " + e.what());
      }
    }
    write_hf_model_dir(tmp.path(), model, base, shard_mb << 20);
  }
  install_directory(tmp, out);
  spdlog::info("exported {} (step {}) as {} to {}", path, st.step, format, out);
  return 0;
}

}  // namespace ringtune
