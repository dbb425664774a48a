// `ringtune logits`: forward pass over token ids stored in safetensors; writes f32 logits and
// prints the mean next-token loss.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cstdio>

#include "src/cli/args.h"
#include "src/cli/commands.h"
#include "src/error.h"
#include "src/io/atomic_file.h"  // defines: check_output_file
#include "src/io/safetensors.h"
#include "src/train/model_setup.h"  // defines: setup_model, resolve_device
#include "model/llama.h"

namespace ringtune {

int cmd_logits(const Args& args) {
  ArgParser p("logits", "--model DIR --input IN.safetensors --output OUT.safetensors",
              "Reads int64 `tokens` [B, T] from IN, writes float32 `logits` [B, T, V] to OUT and\n"
              "prints the mean next-token cross-entropy (target at t is tokens[t+1]).",
              {{"model", "DIR", "Hugging Face model directory (config.json + safetensors)", ""},
               {"input", "FILE", "safetensors file holding int64 `tokens` [B, T]", ""},
               {"output", "FILE", "safetensors file to write `logits` to", ""},
               {"adapter", "P", "PEFT adapter dir, checkpoint .h5 or training output_dir to apply", ""},
               {"dtype", "TYPE", "compute dtype: float32 | bfloat16 | float16", "float32"},
               {"device", "DEV", "cpu, cuda, cuda:N, or auto (a GPU when one is visible)", "cpu"}});
  if (!p.parse(args)) return 0;
  const std::string model_dir = p.get("model"), in = p.get("input"), out = p.get("output");
  check_output_file(out, "--output");  // before any work

  SafeTensorsFile input(in);
  const TensorInfo& ti = input.info("tokens");
  if (ti.dtype != "I64" || ti.shape.size() != 2 || ti.shape[0] < 1 || ti.shape[1] < 2) {
    throw InputError(in + ": tensor \"tokens\" must be I64 [B, T] with T >= 2, got " + ti.dtype +
                     " " + c10::str(c10::IntArrayRef(ti.shape)));
  }
  auto tokens = input.load("tokens");
  ModelOptions mo;
  mo.base_dir = model_dir;
  mo.dtype = p.get("dtype");
  mo.device = resolve_device(p.get("device"));
  if (p.has("adapter")) mo.adapter = p.get("adapter");
  const ModelSetup setup = setup_model(mo);
  LlamaForCausalLM model = setup.model;
  if (p.has("adapter")) spdlog::info("applied {}", setup.adapter.describe());
  const std::string& device = mo.device;
  const int64_t vocab = model->config().vocab_size;
  const int64_t lo = tokens.min().item<int64_t>(), hi = tokens.max().item<int64_t>();
  if (lo < 0 || hi >= vocab) {
    throw InputError(in + ": tokens must lie in [0, " + std::to_string(vocab) + "), found " +
                     std::to_string(lo < 0 ? lo : hi));
  }
  model->eval();
  torch::NoGradGuard no_grad;
  auto logits = model->forward(tokens.to(device));
  const double loss = next_token_loss(logits, tokens).item<double>();
  write_safetensors(out, {{"logits", logits.to(torch::kCPU, torch::kFloat32)}},
                    {{"source", "ringtune logits"}, {"model", model_dir}});
  spdlog::info("wrote logits {} to {}", c10::str(logits.sizes()), out);
  std::printf("loss_mean_next_token %.8f\n", loss);
  return 0;
}

}  // namespace ringtune
