// Every configuration key of ringtune, declared once with its type, default and help, and the
// one validator for checks that involve values or several keys. Names follow Anyscale llmforge
// where it has the key, torchtune/axolotl otherwise.
#include <cmath>
#include <string>
#include <vector>

#include "registry.h"   // defines: Registry, KeyDef, Config
#include "src/config/byte_size.h"  // defines: parse_bytes
#include "src/error.h"  // defines: InputError

namespace ringtune {

// ---------------------------------------------------------------------------------------------
// Declarations, grouped as `ringtune --help` shows them

void declare_keys(Registry& r) {
  using T = KeyType;

  // model
  r.declare("model_id", T::String, "model",
            "Name of the base model, e.g. meta-llama/Meta-Llama-3-8B-Instruct, as in llmforge: "
            "recorded as base_model_name_or_path in exported adapters, and its family (Llama 2/3, "
            "Mistral, Qwen) picks the prompt format of a model without a chat template. A local "
            "directory is used as the weights when initial_base_model_ckpt_path is unset; ringtune "
            "does not download Hub models.");
  r.declare("initial_base_model_ckpt_path", T::Path, "model",
            "Local Hugging Face model directory (config.json, *.safetensors, tokenizer files) "
            "to fine-tune. Unset: model_id, when it is a local directory.");
  r.declare("initial_adapter_model_ckpt_path", T::Path, "model",
            "Adapter to continue training (multi-stage fine-tuning): a PEFT adapter directory "
            "(adapter_config.json, adapter_model.safetensors), a ringtune checkpoint (.h5) or a "
            "run's output_dir. Its LoRA options are used; lora_config, when set, must match them "
            "(lora_dropout may differ). Unset: new adapter weights.");
  r.declare("tokenizer_path", T::Path, "model",
            "Tokenizer file or directory (tokenizer.json or tokenizer.model). Unset: the "
            "tokenizer in initial_base_model_ckpt_path.");
  r.declare("dtype", T::String, "model",
            "Data type of the base weights and of activations (forward and backward). Trainable "
            "weights keep a float32 master copy that the optimizer updates, LoRA adapters and "
            "optimizer state are float32, gradients accumulate in float32. float16 is for "
            "eval/generate only: training in it would need loss scaling and is refused.")
      .def("bfloat16")
      .one_of({"float32", "bfloat16", "float16"});

  // data
  r.declare("train_path", T::Path, "data",
            "Training data: JSONL, one sample per line (OpenAI messages, ShareGPT, Alpaca or "
            "{\"text\": ...}).")
      .require();
  r.declare("valid_path", T::Path, "data",
            "Validation data in the same format. Unset: no validation.");
  r.declare("test_path", T::Path, "data",
            "Test data for `ringtune eval`. Unset: evaluation uses valid_path.");
  r.declare("task", T::String, "data",
            "chat: conversations rendered with the prompt format, loss on the tokens chosen by "
            "train_on. causal_lm: plain text, loss on every token. instruction_tuning is llmforge's "
            "name for chat. (llmforge's classification and preference_tuning are other tasks and "
            "are refused.)")
      .def("chat")
      .one_of({"chat", "causal_lm", "instruction_tuning", "classification", "preference_tuning"});
  r.declare("dataset_format", T::String, "data",
            "Sample layout in the data files (JSON Lines, or a JSON array of records): openai "
            "(messages), sharegpt (conversations), alpaca (instruction/input/output), text, or "
            "prompt_completion (TRL's prompt/completion records, the loss on the completion). "
            "auto: detected from the first valid sample of each file.")
      .def("auto")
      .one_of({"auto", "openai", "sharegpt", "alpaca", "text", "prompt_completion"});
  r.declare("conversation_column", T::String, "data",
            "The key holding each sample's conversation when it is not \"messages\" (OpenAI) or "
            "\"conversations\" (ShareGPT), as torchtune's and axolotl's conversation_column, e.g. "
            "dialogue. Unset: messages / conversations.");
  r.declare("conversation_style", T::String, "data",
            "How the messages of conversation_column are written: openai ({role, content}) or "
            "sharegpt ({from, value}; from human/user, gpt/assistant, system). auto: sharegpt when "
            "the first message has from or value.")
      .def("auto")
      .one_of({"auto", "openai", "sharegpt"});
  r.declare("response_template", T::StringList, "data",
            "Completion-only loss for task causal_lm, as TRL's DataCollatorForCompletionOnlyLM: the "
            "loss falls only on the tokens after the last occurrence of this template in each "
            "sample, e.g. \" ### Answer:\"; a sample without it is invalid (on_invalid_sample). Text "
            "is encoded alone, without bos; a list of token ids, e.g. [835, 673, 29901], is matched "
            "as given (a template can tokenize differently in context than alone). Unset: loss on "
            "every token.");
  r.declare("column_map", T::Map, "data",
            "Alpaca records whose keys have other names, as torchtune's column_map: {instruction: "
            "question, input: context, output: answer, system: sys} (each optional; unset ones keep "
            "their Alpaca name).");
  r.declare("context_length", T::Int, "data",
            "Tokens per training sequence; longer samples are handled by truncation, shorter "
            "ones are packed or padded.")
      .def(2048)
      .at_most(1 << 20);
  r.declare("train_on", T::String, "data",
            "Which tokens carry loss in chat samples: every assistant turn (with its "
            "end-of-turn token), only the last assistant turn, or all tokens.")
      .def("assistant")
      .one_of({"assistant", "last_assistant", "all"});
  r.declare("truncation", T::String, "data",
            "What happens to a sample longer than context_length: drop it (counted and "
            "reported), or keep its last or first context_length tokens.")
      .def("drop")
      .one_of({"drop", "truncate_left", "truncate_right"});
  r.declare("on_invalid_sample", T::String, "data",
            "A malformed sample stops the run with its file:line (error), or is counted and "
            "skipped (skip).")
      .def("error")
      .one_of({"error", "skip"});
  r.declare("allow_special_tokens_in_content", T::Bool, "data",
            "Let message text spell special tokens (e.g. <|eot_id|>) and have them encoded as "
            "those tokens. Off: such text is encoded as ordinary characters.")
      .def(false);
  r.declare("packing", T::Bool, "data",
            "Pack several samples into each context_length sequence (attention never crosses "
            "sample boundaries). Off: one sample per sequence, padded.")
      .def(true);
  r.declare("padding", T::String, "data",
            "llmforge's padding, which means no packing: one sample per sequence, each batch padded "
            "to its longest sample (longest) or to context_length (max_length). Setting it turns "
            "packing off. Unset: packing decides.")
      .one_of({"longest", "max_length"});

  // training
  r.declare("num_epochs", T::Int, "training", "Passes over the training data.").def(1)
      .at_most(10000);
  r.declare("min_update_steps", T::Int, "training",
            "As in llmforge: when num_epochs and max_steps are not given, train for as many whole "
            "epochs as it takes to make at least this many optimizer steps. Unset: num_epochs.")
      .at_most(1e9);
  r.declare("max_steps", T::Int, "training",
            "Stop after this many optimizer steps, looping over the data as needed (overrides "
            "num_epochs). Unset: train for num_epochs.")
      .at_most(1e12);
  r.declare("train_batch_size_per_device", T::String, "training",
            "Sequences per forward/backward pass on each rank (micro-batch), or auto: the largest "
            "micro-batch whose memory estimate (`ringtune estimate`) fits memory_budget, keeping "
            "global_batch_size.")
      .def("1");
  r.declare("memory_budget", T::String, "training",
            "Memory one rank may use, e.g. 20GiB or 16GB: train_batch_size_per_device: auto picks "
            "the largest micro-batch whose estimate fits it, and a run whose estimate exceeds a "
            "budget set here stops before any work. Unset: the available RAM on the CPU (MemAvailable), "
            "the device's memory on a GPU.");
  r.declare("eval_batch_size_per_device", T::Int, "training",
            "Sequences per forward pass on each rank during evaluation.")
      .def(1)
      .at_most(1 << 20);
  r.declare("global_batch_size", T::Int, "training",
            "Sequences per optimizer step over all ranks, whatever their number: each rank takes "
            "a contiguous slice (sizes differ by at most one) in micro-batches of at most "
            "train_batch_size_per_device, so results and resumes do not depend on the number of "
            "ranks. Unset: train_batch_size_per_device * gradient_accumulation_steps * ranks.")
      .at_most(1 << 24);
  r.declare("gradient_accumulation_steps", T::Int, "training",
            "Micro-batches per optimizer step on each rank, when global_batch_size is unset. "
            "Unset: 1 (or derived from global_batch_size).")
      .at_most(1 << 20);
  r.declare("learning_rate", T::Float, "training", "Peak learning rate of AdamW.").def(1e-4);
  r.declare("lr_scheduler_type", T::String, "training",
            "Learning-rate schedule after warmup: constant, linear decay to 0, or cosine "
            "decay to 0.")
      .def("cosine")
      .one_of({"constant", "linear", "cosine"});
  r.declare("num_warmup_steps", T::Int, "training",
            "Optimizer steps of linear warmup from 0 to learning_rate.")
      .def(0);
  r.declare("weight_decay", T::Float, "training", "AdamW decoupled weight decay.").def(0.0);
  const std::vector<std::string> optimizers{"adamw", "adamw_torch", "adamw_torch_fused", "adamw_8bit",
                                           "adamw_bnb_8bit"};
  r.declare("optimizer", T::String, "training",
            "adamw: AdamW with float32 moments (adamw_torch and adamw_torch_fused are the same here). "
            "adamw_8bit (adamw_bnb_8bit): bitsandbytes's blockwise 8-bit AdamW, both moments in 8 bits "
            "(blocks of 256, one float32 scale each; about 2 bytes per trainable value instead of 8) "
            "for tensors of 4096 elements or more, float32 for smaller ones. Unset: optim, else adamw.")
      .def("adamw")
      .one_of(optimizers);
  r.declare("optim", T::String, "training",
            "Hugging Face TrainingArguments' spelling of optimizer (adamw_torch, adamw_bnb_8bit, "
            "adamw_8bit, ...).")
      .one_of(optimizers);
  r.declare("adam_beta1", T::Float, "training", "AdamW beta1.").def(0.9);
  r.declare("adam_beta2", T::Float, "training", "AdamW beta2.").def(0.999);
  r.declare("adam_epsilon", T::Float, "training", "AdamW epsilon.").def(1e-8);
  r.declare("max_grad_norm", T::Float, "training",
            "Clip the global gradient norm to this value; 0 disables clipping.")
      .def(1.0);
  r.declare("on_nonfinite", T::String, "training",
            "A step whose loss or gradient norm is NaN or infinite: stop the run (exit 1, the weights "
            "not updated and no checkpoint of that state written; the last checkpoint stays), or "
            "skip_step (drop that optimizer step, warn, and count it).")
      .def("stop")
      .one_of({"stop", "skip_step"});
  r.declare("seed", T::Int, "training",
            "Seed for data order, dropout and weight initialisation; the same seed gives the "
            "same run on any number of ranks.")
      .def(42);
  r.declare("gradient_checkpointing", T::Bool, "training",
            "Recompute activations in the backward pass instead of storing them: less memory, "
            "about a third more compute.")
      .def(true);
  r.declare("no_gradient_checkpoint", T::Bool, "training",
            "llmforge's older spelling: true turns gradient_checkpointing off.");

  // lora
  r.declare("lora_config.r", T::Int, "lora",
            "LoRA rank. Setting it turns LoRA on; unset (no lora_config): full-parameter "
            "fine-tuning.")
      .at_most(1 << 16);
  r.declare("lora_config.lora_alpha", T::Float, "lora",
            "LoRA scaling numerator: updates are scaled by lora_alpha / r (or / sqrt(r) with "
            "use_rslora).")
      .def(16.0)
      .at_most(1e6)
      .only_if_set("lora_config.r");
  r.declare("lora_config.lora_dropout", T::Float, "lora",
            "Dropout on the LoRA input, in [0, 1).")
      .def(0.05)
      .only_if_set("lora_config.r");
  r.declare("lora_config.target_modules", T::StringList, "lora",
            "Layers that get adapters: projections (q_proj ... down_proj; all-linear means every "
            "one of them), and as in PEFT embed_tokens (PEFT's lora_embedding_A/B) and lm_head.")
      .def({"q_proj", "v_proj"})
      .one_of({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
               "embed_tokens", "lm_head", "all-linear"})
      .only_if_set("lora_config.r");
  r.declare("lora_config.use_rslora", T::Bool, "lora",
            "Rank-stabilised LoRA: scale by lora_alpha / sqrt(r).")
      .def(false)
      .only_if_set("lora_config.r");
  r.declare("lora_config.bias", T::String, "lora",
            "Which biases train besides the adapters (PEFT's bias option).")
      .def("none")
      .one_of({"none", "all", "lora_only"})
      .only_if_set("lora_config.r");
  r.declare("lora_config.modules_to_save", T::StringList, "lora",
            "Modules trained in full and saved with the adapter, e.g. [embed_tokens, lm_head] "
            "when new tokens were added.")
      .def(std::vector<std::string>{})
      .one_of({"embed_tokens", "lm_head"})
      .only_if_set("lora_config.r");
  r.declare("lora_config.init_lora_weights", T::String, "lora",
            "Adapter initialisation as in PEFT: true (Kaiming-uniform A, zero B), gaussian "
            "(normal A, zero B), false (random B too; the model changes at step 0).")
      .def("true")
      .one_of({"true", "false", "gaussian"})
      .only_if_set("lora_config.r");
  r.declare("lora_config.task_type", T::String, "lora",
            "PEFT's task type; ringtune trains causal language models, so CAUSAL_LM (what the "
            "exported adapter_config.json says).")
      .def("CAUSAL_LM")
      .one_of({"CAUSAL_LM"})
      .only_if_set("lora_config.r");
  r.declare("lora_config.fan_in_fan_out", T::Bool, "lora",
            "PEFT's flag for layers that store weights as (in, out) (GPT-2's Conv1D). Llama-family "
            "projections are (out, in): true is reset to false with a warning, as PEFT does.")
      .def(false)
      .only_if_set("lora_config.r");

  // quantization (QLoRA)
  r.declare("quantization", T::String, "lora",
            "nf4: QLoRA. The frozen weights of every decoder-layer projection (attention and MLP) "
            "are quantized at load to 4-bit NormalFloat exactly as bitsandbytes does (blocks of "
            "64, double-quantized block scales), about 0.52 byte per weight instead of 2; each is "
            "dequantized to dtype just for its matmul. Embeddings, norms and lm_head stay in "
            "dtype. Needs LoRA (lora_config). none: weights in dtype. Unset: nf4 when load_in_4bit "
            "is true or adapter is qlora, else none.")
      .def("none")
      .one_of({"none", "nf4"});
  r.declare("load_in_4bit", T::Bool, "lora",
            "axolotl's and transformers' spelling: true selects quantization nf4.");
  r.declare("adapter", T::String, "lora",
            "axolotl's adapter kind: qlora selects quantization nf4; lora changes nothing. "
            "LoRA itself is configured by lora_config.")
      .one_of({"lora", "qlora"});

  // prompt format: a preset name, or a map of llmforge templates
  r.declare("generation_config.prompt_format", T::String, "prompt",
            "How conversations become text: a preset name, or a map of templates (system, "
            "user, assistant, trailing_assistant, bos, system_in_user, default_system_message, "
            "strip_whitespace) as in llmforge. auto: the model's own Jinja chat template "
            "(tokenizer_config.json or chat_template.jinja), rendered as transformers renders "
            "it; for a model without one, the preset whose chat tokens its vocabulary has.")
      .def("auto")
      // Must match prompt_format_preset_names() in src/data/prompt_format.cpp, plus auto.
      .one_of({"auto", "llama3", "llama2", "mistral", "chatml", "none"});
  r.declare("chat_template", T::String, "prompt",
            "A Jinja chat template to use instead of the model's own: the template text, or the "
            "path of a file holding it (relative to this config file). Rendered as transformers' "
            "apply_chat_template renders it. Unset: the model's own template (tokenizer_config.json "
            "or chat_template.jinja) under prompt_format auto.");
  r.declare("chat_template_kwargs", T::Map, "prompt",
            "Extra variables for the chat template, as transformers' apply_chat_template(**kwargs) "
            "takes them, e.g. {enable_thinking: false}.");
  const std::string pf = "generation_config.prompt_format.";
  r.declare(pf + "system", T::String, "prompt",
            "Template of a system message; {instruction} is replaced by its text. Required in "
            "the map form.");
  r.declare(pf + "user", T::String, "prompt",
            "Template of a user message, e.g. \"[INST] {instruction} [/INST]\"; with "
            "system_in_user it also holds {system}. Required in the map form.");
  r.declare(pf + "assistant", T::String, "prompt",
            "Template of an assistant message, e.g. \" {instruction}</s>\". Required in the "
            "map form.");
  r.declare(pf + "trailing_assistant", T::String, "prompt",
            "Text appended after the last user message when generating. Unset: empty.");
  r.declare(pf + "bos", T::String, "prompt",
            "Text put once at the start of every sample, e.g. \"<s>\". Unset: empty.");
  r.declare(pf + "system_in_user", T::Bool, "prompt",
            "Put the system message inside the first user message (Llama 2 style). "
            "Unset: false.");
  r.declare(pf + "default_system_message", T::String, "prompt",
            "System message used when a sample has none. Unset: no system message.");
  r.declare(pf + "strip_whitespace", T::Bool, "prompt",
            "Strip leading and trailing whitespace from message content. Unset: true.");

  // checkpoint
  r.declare("output_dir", T::Path, "checkpoint",
            "Directory for checkpoints, exported adapters, metrics and logs.")
      .def("runs/ringtune");
  r.declare("checkpoint_every_n_steps", T::Int, "checkpoint",
            "Write a checkpoint every this many optimizer steps; 0: only at the end of each "
            "epoch and of training.")
      .def(0);
  r.declare("num_checkpoints_to_keep", T::Int, "checkpoint",
            "How many checkpoints to keep, as in llmforge: when validation runs, the ones with the "
            "lowest validation loss (the newest checkpoint is kept as well, so a run always resumes "
            "where it stopped); without validation, the newest. 0 keeps all.")
      .def(2);
  r.declare("checkpoint_and_evaluation_frequency.unit", T::String, "checkpoint",
            "llmforge's checkpoint and validation schedule: the unit of frequency.")
      .one_of({"epochs", "steps"});
  r.declare("checkpoint_and_evaluation_frequency.frequency", T::Int, "checkpoint",
            "Checkpoint and validate every this many units (epochs or optimizer steps); sets "
            "checkpoint_every_n_steps and eval_steps together.");
  r.declare("checkpoint_every_n_epochs", T::Int, "checkpoint",
            "llmforge's older key: checkpoint and validate every this many epochs.");
  r.declare("resume", T::Path, "checkpoint",
            "auto: continue from the latest checkpoint in output_dir if there is one; none: "
            "start fresh; or the path of a checkpoint file.")
      .def("auto")
      .one_of({"auto", "none"});

  // distributed
  r.declare("device", T::String, "distributed",
            "Where each rank computes: cuda (the rank's GPU is its local rank modulo the visible "
            "GPUs; ranks may share one), cpu, or auto (cuda when a GPU is visible, else cpu).")
      .def("auto")
      .one_of({"auto", "cpu", "cuda"});
  r.declare("distributed.backend", T::String, "distributed",
            "Gradient communication: nccl (CUDA tensors, one rank per GPU), mpi (CPU tensors; "
            "CUDA tensors through host memory), or auto (nccl on GPUs when it loads and no GPU "
            "is shared by two ranks, else mpi).")
      .def("auto")
      .one_of({"auto", "mpi", "nccl"});
  r.declare("distributed.zero_stage", T::Int, "distributed",
            "0: every rank holds the whole optimizer state; 1: ZeRO-1, each rank holds and "
            "updates a shard of it. Unset with an llmforge deepspeed config: 1.")
      .def(0);
  r.declare("distributed.timeout_s", T::Float, "distributed",
            "Seconds a rank may wait in a collective while no rank makes progress (a network "
            "partition, a dead or hung peer) before the watchdog aborts the job, naming the "
            "collective and the silent peers; 0: no watchdog. Progress is a completed collective "
            "or a unit of local work (a micro-batch, a validation batch, a checkpoint or export "
            "tensor written, a sample prepared), so a slow checkpoint write does not trip it.")
      .def(600.0);
  r.declare("num_devices", T::Int, "distributed",
            "llmforge's number of GPU workers. ringtune's ranks come from the launcher (mpirun -np "
            "N, srun): a different number gives a warning that says how to launch N ranks.")
      .at_most(1 << 16);
  r.declare("deepspeed", T::Any, "distributed",
            "llmforge's DeepSpeed config ({config_path: ...}). ringtune does not run DeepSpeed: it "
            "shards optimizer state itself (distributed.zero_stage 1, which this key selects when "
            "zero_stage is unset); the warning says which ZeRO stage the file asked for.");

  // eval
  r.declare("eval_steps", T::Int, "eval",
            "Evaluate on valid_path every this many optimizer steps; 0: at the end of each "
            "epoch.")
      .def(0);
  r.declare("eval.generation", T::String, "eval",
            "Generation-based metric besides loss and perplexity: exact_match generates each "
            "reply greedily and compares it to the reference.")
      .def("none")
      .one_of({"none", "exact_match"});
  r.declare("eval.max_new_tokens", T::Int, "eval",
            "Most tokens generated per sample in generation-based evaluation.")
      .def(256)
      .at_most(1 << 20);

  // logging
  r.declare("peak_flops", T::Float, "logging",
            "Peak FLOP/s of one rank's device for the mfu column of metrics.jsonl; 0: a table of "
            "known GPUs (dense bf16/fp16 or fp32), or on the CPU a matmul measured once and cached.")
      .def(0.0);
  r.declare("logging.level", T::String, "logging", "Log level.")
      .def("info")
      .one_of({"trace", "debug", "info", "warn", "error"});
  r.declare("logging.per_rank_files", T::Bool, "logging",
            "Every rank writes its own log file in output_dir (rank 0 always logs to the "
            "console).")
      .def(false);

  // Keys of llmforge that ringtune accepts without acting on them: one warning each says why.
  r.declare("worker_resources", T::Any, "compat", "llmforge: Ray resources of each training worker.")
      .accepted_not_used("Ray scheduling; ringtune's ranks and their devices come from the launcher (mpirun, "
                         "srun) and the device key");
  r.declare("trainer_resources", T::Any, "compat", "llmforge: Ray resources of the trainer process.")
      .accepted_not_used("Ray scheduling; rank 0 of the launcher writes checkpoints and exports");
  r.declare("dataset_size_scaling_factor", T::Any, "compat",
            "llmforge: an internal factor for estimating the size of a streamed dataset.")
      .accepted_not_used("ringtune prepares the dataset before training and counts it exactly");
  r.declare("num_data_blocks_per_device", T::Any, "compat", "llmforge: Ray Data blocks per GPU.")
      .accepted_not_used("ringtune reads its prepared HDF5 dataset directly, without Ray Data");
  r.declare("flash_attention_2", T::Bool, "compat", "llmforge: use FlashAttention-2 kernels.")
      .accepted_not_used("ringtune computes attention with its own causal, sample-masked scaled dot product in "
                         "libtorch whatever this says (the same result up to rounding)");
  r.declare("liger_kernel", T::Any, "compat", "llmforge: Liger's Triton kernels for norms, RoPE, SwiGLU, loss.")
      .accepted_not_used("Liger's kernels are Triton (GPU) code; ringtune computes these with its own libtorch code");
  r.declare("logger", T::Any, "compat", "llmforge: an experiment tracker (wandb or mlflow).")
      .accepted_not_used("ringtune writes every step's metrics to OUTPUT_DIR/metrics.jsonl and its log; nothing "
                         "is sent to wandb or mlflow");
  r.declare("generation_config.stopping_sequences", T::Any, "compat",
            "llmforge: strings that end generation at inference.")
      .accepted_not_used("ringtune's eval and generate stop at the chat template's end-of-turn token and the "
                         "model's generation_config.json eos ids");
  r.declare("max_num_checkpoints", T::Any, "compat",
            "llmforge (old): spread this many checkpoints over the run.")
      .accepted_not_used("ringtune checkpoints at the end of each epoch, or every checkpoint_every_n_steps");
  r.declare("eval_first", T::Any, "compat", "llmforge: validate once before training.")
      .accepted_not_used("ringtune validates after steps (eval_steps) and at the end; `ringtune eval` scores a "
                         "model before training");
  r.declare("custom_model_tag", T::Any, "compat", "llmforge: a tag for Anyscale's model registry.")
      .accepted_not_used("ringtune writes the adapter or model to output_dir; there is no registry");
  r.declare("embedding_scaling_technique", T::String, "compat",
            "llmforge: context extension by RoPE scaling (none or linear).")
      .one_of({"none", "linear"});
  r.declare("classifier_config", T::Any, "compat", "llmforge's LLM-classifier task: refused.");
  r.declare("preference_tuning_config", T::Any, "compat", "llmforge's DPO task: refused.");
}

// ---------------------------------------------------------------------------------------------
// Cross-key validation

namespace {

// Throws InputError: "<where the key was set>: key "<key>": <message>".
[[noreturn]] void fail(const Config& c, const std::string& key, const std::string& message) {
  const Origin& o = c.origin(key);
  std::string where = o.describe();
  if (o.kind == Origin::Kind::Default) where += ": key \"" + key + "\" (default)";
  else where += ": key \"" + key + "\"";
  throw InputError(where + ": " + message);
}

// ABORT_IF in marian's words: the check fails when `bad` is true.
void fail_if(bool bad, const Config& c, const std::string& key, const std::string& rule) {
  if (bad) fail(c, key, rule + ", got " + c.text(key));
}

}  // namespace

void validate_config(const Config& c) {
  const Registry& reg = c.registry();

  // Keys that only matter while another key is set (lora_config.* needs lora_config.r).
  for (const KeyDef& k : reg.keys()) {
    if (!k.active_if.empty() && c.is_explicit(k.name) && !c.is_set(k.active_if)) {
      fail(c, k.name,
           "only used when " + k.active_if + " is set (set " + k.active_if +
               " to train a LoRA adapter; without it all weights are trained)");
    }
  }

  // Upper bounds declared with the keys (KeyDef::at_most).
  for (const KeyDef& k : reg.keys()) {
    if (!k.max_value || !c.is_set(k.name)) continue;
    const double v = k.type == KeyType::Int ? static_cast<double>(c.get_int(k.name)) : c.get_double(k.name);
    fail_if(v > *k.max_value, c, k.name, "must be <= " + format_bound(*k.max_value));
  }

  // data
  fail_if(c.get_int("context_length") <= 0, c, "context_length", "must be > 0");
  const std::string task = c.get_string("task");
  const std::string format = c.get_string("dataset_format");
  if (task == "causal_lm" && format != "auto" && format != "text")
    fail(c, "dataset_format", "task causal_lm reads plain text (auto or text), got " + format);
  if (c.is_set("response_template") && task != "causal_lm")
    fail(c, "response_template",
         "is for task causal_lm (plain text); chat samples get their loss from train_on");
  if (task == "chat" && format == "text")
    fail(c, "dataset_format", "text samples have no conversation; set task: causal_lm");

  if (task == "classification" || task == "preference_tuning")
    fail(c, "task", task + " is an llmforge task ringtune does not do (it trains chat/instruction models and "
                    "causal LMs by next-token loss); use chat, instruction_tuning or causal_lm");
  if (c.is_set("classifier_config"))
    fail(c, "classifier_config", "llmforge's LLM-classifier task is not supported by ringtune (it trains by "
                                 "next-token loss on chat or plain text); remove the key");
  if (c.is_set("preference_tuning_config"))
    fail(c, "preference_tuning_config", "preference tuning (DPO) is not supported by ringtune (it trains by "
                                        "next-token loss on chat or plain text); remove the key");
  if (c.is_set("padding") && c.is_explicit("packing") && c.get_bool("packing"))
    fail(c, "padding", "llmforge's padding means one sample per sequence, but packing is true; keep one");
  if (c.is_set("embedding_scaling_technique") && c.get_string("embedding_scaling_technique") == "linear")
    fail(c, "embedding_scaling_technique",
         "ringtune takes RoPE scaling from the model's config.json (rope_scaling: {type: linear, "
         "factor: F}); set it there and remove this key");

  // training
  const bool has_max_steps = c.is_set("max_steps");
  if (has_max_steps) fail_if(c.get_int("max_steps") <= 0, c, "max_steps", "must be > 0");
  fail_if(c.get_int("num_epochs") < 0, c, "num_epochs", "must be >= 0");
  fail_if(!has_max_steps && c.get_int("num_epochs") < 1, c, "num_epochs",
          "must be >= 1 when max_steps is unset");
  {
    const std::string mb = c.get_string("train_batch_size_per_device");
    const bool digits = !mb.empty() && mb.size() < 10 && mb.find_first_not_of("0123456789") == std::string::npos;
    fail_if(!(mb == "auto" || (digits && std::stoll(mb) >= 1)), c, "train_batch_size_per_device",
            "must be an integer >= 1 or auto");
    if (mb == "auto" && !c.is_set("global_batch_size"))
      fail(c, "train_batch_size_per_device",
           "auto keeps the global batch and picks the micro-batch: set global_batch_size");
    // Without global_batch_size the batch of a step is derived; it has global_batch_size's bound.
    const double most = *reg.at("global_batch_size").max_value;
    if (mb != "auto" && !c.is_set("global_batch_size")) {
      const int64_t accumulation = c.is_set("gradient_accumulation_steps") ? c.get_int("gradient_accumulation_steps") : 1;
      const int64_t devices = c.is_set("num_devices") ? c.get_int("num_devices") : 1;
      const double per_step = static_cast<double>(std::stoll(mb)) * static_cast<double>(accumulation) * static_cast<double>(devices);
      if (per_step > most)
        fail(c, c.is_explicit("gradient_accumulation_steps") ? "gradient_accumulation_steps" : "train_batch_size_per_device",
             "train_batch_size_per_device x gradient_accumulation_steps" + std::string(devices > 1 ? " x num_devices" : "") +
                 " is " + format_bound(per_step) + " sequences per step; at most " + format_bound(most) +
                 " (global_batch_size's bound)");
    }
  }
  if (c.is_set("memory_budget")) {
    try {
      parse_bytes(c.get_string("memory_budget"));
    } catch (const std::invalid_argument& e) {
      fail(c, "memory_budget", e.what());
    }
  }
  fail_if(c.get_int("eval_batch_size_per_device") < 1, c, "eval_batch_size_per_device",
          "must be >= 1");
  if (c.is_set("global_batch_size")) {
    fail_if(c.get_int("global_batch_size") < 1, c, "global_batch_size", "must be >= 1");
    if (c.is_set("gradient_accumulation_steps"))
      fail(c, "gradient_accumulation_steps",
           "set either global_batch_size (accumulation is derived from it) or "
           "gradient_accumulation_steps, not both");
  }
  if (c.is_set("gradient_accumulation_steps"))
    fail_if(c.get_int("gradient_accumulation_steps") < 1, c, "gradient_accumulation_steps",
            "must be >= 1");
  fail_if(!(c.get_double("learning_rate") > 0), c, "learning_rate", "must be > 0");
  fail_if(c.get_int("num_warmup_steps") < 0, c, "num_warmup_steps", "must be >= 0");
  fail_if(c.get_double("weight_decay") < 0, c, "weight_decay", "must be >= 0");
  for (const char* beta : {"adam_beta1", "adam_beta2"}) {
    double b = c.get_double(beta);
    fail_if(!(b >= 0 && b < 1), c, beta, "must be in [0, 1)");
  }
  fail_if(!(c.get_double("adam_epsilon") > 0), c, "adam_epsilon", "must be > 0");
  fail_if(c.get_double("max_grad_norm") < 0, c, "max_grad_norm", "must be >= 0 (0: no clipping)");
  fail_if(c.get_int("seed") < 0, c, "seed", "must be >= 0");
  if (c.is_set("min_update_steps"))
    fail_if(c.get_int("min_update_steps") < 1, c, "min_update_steps", "must be >= 1");
  if (c.is_set("no_gradient_checkpoint") && c.is_explicit("gradient_checkpointing") &&
      c.get_bool("no_gradient_checkpoint") == c.get_bool("gradient_checkpointing"))
    fail(c, "no_gradient_checkpoint", "contradicts gradient_checkpointing: " + c.text("gradient_checkpointing"));

  if (c.is_set("optim") && c.is_explicit("optimizer")) {
    auto eight = [](const std::string& v) { return v.find("8bit") != std::string::npos; };
    if (eight(c.get_string("optim")) != eight(c.get_string("optimizer")))
      fail(c, "optim", c.get_string("optim") + " contradicts optimizer: " + c.get_string("optimizer"));
  }

  // quantization (its default follows load_in_4bit and adapter: see the loader)
  const bool load_in_4bit = c.is_set("load_in_4bit") && c.get_bool("load_in_4bit");
  const std::string quantization = c.get_string("quantization");
  if ((load_in_4bit || (c.is_set("adapter") && c.get_string("adapter") == "qlora")) &&
      c.is_explicit("quantization") && quantization != "nf4")
    fail(c, "quantization", quantization + " contradicts " + (load_in_4bit ? "load_in_4bit: true" : "adapter: qlora"));
  if (quantization == "nf4" && !c.is_set("lora_config.r"))
    fail(c, c.is_explicit("quantization") ? "quantization" : c.is_set("adapter") ? "adapter" : "load_in_4bit",
         "NF4 quantization freezes the base weights and needs LoRA: set lora_config.r (full fine-tuning "
         "cannot train 4-bit weights)");

  // lora
  if (c.is_set("lora_config.r")) {
    fail_if(c.get_int("lora_config.r") <= 0, c, "lora_config.r", "must be > 0");
    fail_if(!(c.get_double("lora_config.lora_alpha") > 0), c, "lora_config.lora_alpha",
            "must be > 0");
    double dropout = c.get_double("lora_config.lora_dropout");
    fail_if(!(dropout >= 0 && dropout < 1), c, "lora_config.lora_dropout", "must be in [0, 1)");
    fail_if(c.get_strings("lora_config.target_modules").empty(), c, "lora_config.target_modules",
            "must name at least one module");
  }

  // prompt format (map form)
  const std::string pf = "generation_config.prompt_format.";
  bool map_form = false;
  for (const KeyDef& k : reg.keys())
    if (k.name.rfind(pf, 0) == 0 && c.is_set(k.name)) map_form = true;
  if (map_form) {
    for (const char* part : {"system", "user", "assistant"}) {
      if (!c.is_set(pf + part)) {
        const std::string first_set = [&] {
          for (const KeyDef& k : reg.keys())
            if (k.name.rfind(pf, 0) == 0 && c.is_set(k.name)) return k.name;
          return std::string();
        }();
        fail(c, first_set,
             "a prompt_format map needs system, user and assistant templates; " + pf + part +
                 " is missing");
      }
    }
    for (const char* part : {"system", "user", "assistant"}) {
      const std::string key = pf + part;
      if (c.is_set(key) && c.get_string(key).find("{instruction}") == std::string::npos)
        fail(c, key, "template must contain {instruction}, got \"" + c.text(key) + "\"");
    }
  }

  // checkpoint, distributed, eval
  fail_if(c.get_int("checkpoint_every_n_steps") < 0, c, "checkpoint_every_n_steps",
          "must be >= 0 (0: at the end of each epoch)");
  fail_if(c.get_int("num_checkpoints_to_keep") < 0, c, "num_checkpoints_to_keep",
          "must be >= 0 (0: keep all)");
  const std::string freq = "checkpoint_and_evaluation_frequency";
  if (c.is_set(freq + ".unit") != c.is_set(freq + ".frequency"))
    fail(c, c.is_set(freq + ".unit") ? freq + ".unit" : freq + ".frequency",
         "needs both unit (epochs or steps) and frequency");
  if (c.is_set(freq + ".frequency")) {
    fail_if(c.get_int(freq + ".frequency") < 1, c, freq + ".frequency", "must be >= 1");
    for (const char* other : {"checkpoint_every_n_steps", "eval_steps", "checkpoint_every_n_epochs"})
      if (c.is_explicit(other))
        fail(c, other, "and " + freq + " both set when to checkpoint; keep one");
  }
  if (c.is_set("checkpoint_every_n_epochs")) {
    fail_if(c.get_int("checkpoint_every_n_epochs") < 1, c, "checkpoint_every_n_epochs", "must be >= 1");
    for (const char* other : {"checkpoint_every_n_steps", "eval_steps"})
      if (c.is_explicit(other)) fail(c, other, "and checkpoint_every_n_epochs both set when to checkpoint; keep one");
  }
  if (c.is_set("num_devices")) fail_if(c.get_int("num_devices") < 1, c, "num_devices", "must be >= 1");
  int64_t zero = c.get_int("distributed.zero_stage");
  fail_if(zero != 0 && zero != 1, c, "distributed.zero_stage", "must be 0 or 1");
  fail_if(!(c.get_double("peak_flops") >= 0), c, "peak_flops", "must be >= 0 (0: automatic)");
  fail_if(!(c.get_double("distributed.timeout_s") >= 0), c, "distributed.timeout_s",
          "must be >= 0 seconds (0: no watchdog)");
  fail_if(c.get_int("eval_steps") < 0, c, "eval_steps", "must be >= 0 (0: each epoch)");
  fail_if(c.get_int("eval.max_new_tokens") < 1, c, "eval.max_new_tokens", "must be >= 1");
  if (c.get_string("eval.generation") != "none" && !c.is_set("valid_path") &&
      !c.is_set("test_path"))
    fail(c, "eval.generation", c.get_string("eval.generation") +
                                   " needs reference replies: set valid_path or test_path");
}

}  // namespace ringtune
