// The training loop; see trainer.h.
//
// Step arithmetic: every optimizer step consumes `global_batch_size` packed sequences in the
// global order of its epoch (the last step of an epoch may be short). The loss of a step is the
// sum of token cross-entropies over its supervised tokens divided by their count, which is known
// before the forward passes, so each micro-batch back-propagates sum / count and the accumulated
// gradient is exactly the gradient of the step's mean.
#include "src/train/trainer.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <map>
#include <cmath>
#include <filesystem>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>

#include "distributed/comm.h"
#include "distributed/process_group.h"
#include "distributed/shard_map.h"
#include "model/llama.h"
#include "model/lora.h"
#include "src/config/registry.h"
#include "src/data/data_pipeline.h"
#include "src/data/prepared_dataset.h"
#include "src/error.h"
#include "src/io/adapter_io.h"
#include "src/io/export.h"
#include "src/io/hf_model.h"
#include "src/log.h"
#include "src/train/adamw.h"
#include "src/train/batcher.h"
#include "src/train/checkpoint.h"
#include "src/train/data_parallel.h"
#include "src/train/evaluate.h"
#include "src/train/loss.h"
#include "src/train/lr_schedule.h"

namespace fs = std::filesystem;

namespace ringtune {

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) { g_stop = true; }

// Fault injection for tests: RINGTUNE_TEST_<NAME>=<step> makes the process send itself `sig`
// after that optimizer step (SIGKILL: a crash between checkpoints; SIGTERM: a Slurm stop).
void maybe_signal_after(const char* var, int64_t step, int sig) {
  const char* v = std::getenv(var);
  if (v && std::atoll(v) == step) ::kill(::getpid(), sig);
}

// Fault injection for the multi-rank tests, between the backward passes and the gradient
// reduction of a step: RINGTUNE_TEST_FAULT=<kill|throw>:<rank>:<step>.
void fault_hook(int64_t step, int rank) {
  const char* v = std::getenv("RINGTUNE_TEST_FAULT");
  if (!v) return;
  char kind[16] = {0};
  int r = -1;
  long long s = -1;
  if (std::sscanf(v, "%15[a-z]:%d:%lld", kind, &r, &s) != 3 || r != rank || s != step) return;
  if (std::strcmp(kind, "kill") == 0) ::kill(::getpid(), SIGKILL);
  throw Error("RINGTUNE_TEST_FAULT: rank " + std::to_string(rank) + " fails at step " + std::to_string(step));
}

std::vector<uint8_t> rng_bytes() {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  auto t = gen.get_state();
  return std::vector<uint8_t>(t.data_ptr<uint8_t>(), t.data_ptr<uint8_t>() + t.numel());
}

void set_rng_bytes(const std::vector<uint8_t>& b) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  auto t = torch::empty({static_cast<int64_t>(b.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), b.data(), b.size());
  gen.set_state(t);
}

// Keeps metrics lines of steps <= `step` (a resumed run rewrites what follows).
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      if (nlohmann::json::parse(line).value("step", int64_t{0}) <= step) kept += line + "\n";
    } catch (...) {
      break;  // a torn last line
    }
  }
  in.close();
  std::ofstream(path, std::ios::trunc) << kept;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int64_t peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) / 1024;
  return -1;
}

[[noreturn]] void config_error(const Config& c, const std::string& key, const std::string& why) {
  throw InputError(c.origin(key).describe() + ": " + key + ": " + why);
}

}  // namespace

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
    config_error(c, "lora_config.r", e.what());
  }
  return o;
}

namespace {

// Mean loss over every supervised token of `seqs` (no gradient); each rank takes its slice and
// the sums are added over ranks.
double evaluate(LlamaForCausalLM& model, const std::vector<PackedSequence>& seqs, int64_t batch, DataParallel& dp,
                int rank, int world) {
  const auto [lo, hi] = rank_slice(0, seqs.size(), rank, world);
  const LossEval e = evaluate_loss(model, seqs, batch, lo, hi);
  const auto total = dp.sum({e.loss_sum, static_cast<double>(e.supervised_tokens)});
  return total[1] > 0 ? total[0] / total[1] : std::nan("");
}

// Dropout draws depend only on (seed, step, first global row of the micro-batch), so a resumed
// run draws what the uninterrupted one did.
uint64_t micro_batch_seed(uint64_t seed, int64_t step, size_t row) {
  uint64_t z = seed ^ (static_cast<uint64_t>(step) * 0x9E3779B97F4A7C15ULL) ^ (static_cast<uint64_t>(row) << 32);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFFULL;
}

// Ranks must run the same configuration with the same binary: hashes are all-gathered and any
// rank that differs from rank 0 is named.
void check_same_everywhere(const ProcessGroup& pg, const std::string& config_yaml) {
  if (pg.size() == 1) return;
  const std::string mine = file_fingerprint({"/proc/self/exe"}) + " " + text_fingerprint(config_yaml);
  const auto all = pg.all_gather_string(mine);
  std::string bad;
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r] == all[0]) continue;
    const bool bin = all[r].substr(0, all[r].find(' ')) != all[0].substr(0, all[0].find(' '));
    bad += (bad.empty() ? "" : ", ") + std::string("rank ") + std::to_string(r) + (bin ? " (binary)" : " (config)");
  }
  if (!bad.empty())
    throw InputError("ranks started differently from rank 0: " + bad + "; every rank must run the same binary with the same configuration");
}

}  // namespace

TrainSummary run_training(const Config& c) {
  const auto t_start = Clock::now();
  const std::string out_dir = c.get_string("output_dir");

  // Process group first: every rank runs this same function; rank 0 writes what is shared.
  ProcessGroup& pg = ProcessGroup::init();
  const int rank = pg.rank(), world = pg.size();
  const bool leader = rank == 0;
  check_same_everywhere(pg, c.dump_yaml());
  const std::string device = torch::cuda::is_available() ? "cuda:" + std::to_string(pg.local_rank()) : "cpu";
  if (leader) fs::create_directories(out_dir);
  pg.barrier();
  if (c.get_bool("logging.per_rank_files"))
    init_logging(c.get_string("logging.level"), rank, world, out_dir);
  std::unique_ptr<Communicator> comm;
  try {
    comm = make_communicator(c.get_string("distributed.backend"), device != "cpu");
  } catch (const std::runtime_error& e) {
    config_error(c, "distributed.backend", e.what());
  }
  if (world > 1) spdlog::info("{} ranks, {} backend, device {}", world, comm->backend(), device);

  // Data: rank 0 tokenizes into the prepared cache, the others read it once it is there.
  const DataPipeline pipe = make_data_pipeline(c);
  auto prepared = [&](const std::string& split) {
    const std::string path = prepared_dataset_path(out_dir, split);
    if (leader) prepare_dataset(pipe, {c.get_string(split + "_path")}, path);
    pg.barrier();
    return PreparedDataset::load(path);
  };
  const PreparedDataset train = prepared("train");
  if (train.size() == 0) config_error(c, "train_path", "no usable samples");
  const bool has_valid = c.is_set("valid_path");
  PreparedDataset valid;
  if (has_valid) valid = prepared("valid");

  // Model.
  const std::string base_dir = c.get_string("initial_base_model_ckpt_path");
  const std::string dtype = c.get_string("dtype");
  LlamaForCausalLM model = load_hf_model(base_dir, dtype, device);
  const LlamaConfig& mc = model->config();
  const int64_t context = c.get_int("context_length");
  if (context > mc.max_position_embeddings)
    config_error(c, "context_length", std::to_string(context) + " exceeds the model's max_position_embeddings " +
                                          std::to_string(mc.max_position_embeddings));
  for (const int32_t id : train.ids)
    if (id < 0 || id >= mc.vocab_size)
      config_error(c, "tokenizer_path", "token id " + std::to_string(id) + " is outside the model's vocabulary of " +
                                            std::to_string(mc.vocab_size) + " (tokenizer and model do not match)");
  model->gradient_checkpointing = c.get_bool("gradient_checkpointing");

  bool use_lora = c.is_set("lora_config.r");
  LoraOptions lora;
  if (c.is_set("initial_adapter_model_ckpt_path")) {
    // Continue an adapter (multi-stage fine-tuning): its own LoRA options, which lora_config, when
    // given, must repeat.
    const std::string path = c.get_string("initial_adapter_model_ckpt_path");
    LoraOptions from;
    AdapterInfo info;
    try {
      info = load_adapter(model, path, &from);
    } catch (const InputError& e) {
      config_error(c, "initial_adapter_model_ckpt_path", e.what());
    }
    spdlog::info("initial adapter: {}", info.describe());
    if (info.lora) {
      const LoraOptions want = use_lora ? lora_options_from_config(c) : from;
      if (use_lora) {
        auto differs = [&](const std::string& key, const std::string& ours, const std::string& theirs) {
          if (ours != theirs)
            config_error(c, "lora_config." + key, ours + " does not match the initial adapter's " + theirs + " (" + info.file + ")");
        };
        differs("r", std::to_string(want.r), std::to_string(from.r));
        differs("lora_alpha", std::to_string(want.lora_alpha), std::to_string(from.lora_alpha));
        differs("use_rslora", want.use_rslora ? "true" : "false", from.use_rslora ? "true" : "false");
        auto joined = [](std::vector<std::string> v) {
          if (std::find(v.begin(), v.end(), "all-linear") != v.end()) {
            v.clear();
            for (const auto& n : lora_target_names())
              if (n != "lm_head") v.push_back(n);
          }
          std::sort(v.begin(), v.end());
          std::string out;
          for (const auto& n : v) out += (out.empty() ? "" : ",") + n;
          return out;
        };
        differs("target_modules", joined(want.target_modules), joined(from.target_modules));
      }
      lora = from;
      lora.lora_dropout = want.lora_dropout;
      lora.seed = static_cast<uint64_t>(c.get_int("seed"));
      set_lora_dropout(model, lora.lora_dropout);
      use_lora = true;
    } else if (use_lora) {
      config_error(c, "initial_adapter_model_ckpt_path", info.file + " holds full weights, not an adapter; "
                                                             "drop lora_config to continue full fine-tuning");
    }
  } else if (use_lora) {
    lora = lora_options_from_config(c);
    std::vector<std::string> adapted;
    try {
      adapted = apply_lora(model, lora);
    } catch (const std::invalid_argument& e) {
      config_error(c, "lora_config.target_modules", e.what());
    }
    spdlog::info("LoRA r={} alpha={} scale={:.4g} on {} modules", lora.r, lora.lora_alpha, lora_scale(lora), adapted.size());
  } else {
    for (auto& p : model->parameters()) p.set_requires_grad(true);
  }
  std::vector<std::pair<std::string, torch::Tensor>> trainable;
  int64_t n_trainable = 0, n_total = 0;
  for (const auto& p : model->named_parameters()) {
    n_total += p.value().numel();
    if (p.value().requires_grad()) {
      trainable.emplace_back(p.key(), p.value());
      n_trainable += p.value().numel();
    }
  }
  spdlog::info("trainable parameters: {} of {} ({:.3f}%)", n_trainable, n_total, 100.0 * n_trainable / n_total);

  // Batch arithmetic: the global batch (sequences per optimizer step) is fixed by the config
  // whatever the world size; each rank takes its slice in micro-batches.
  const int64_t micro = c.get_int("train_batch_size_per_device");
  const int64_t accum = c.is_set("gradient_accumulation_steps") ? c.get_int("gradient_accumulation_steps") : 1;
  const int64_t global = c.is_set("global_batch_size") ? c.get_int("global_batch_size") : micro * accum * world;
  if (micro < 1) config_error(c, "train_batch_size_per_device", "must be >= 1");
  if (global < 1) config_error(c, "global_batch_size", "must be >= 1");
  const bool packing = c.get_bool("packing");
  const uint64_t seed = static_cast<uint64_t>(c.get_int("seed"));
  const bool dropout = use_lora && lora.lora_dropout > 0;
  const int32_t pad_id = std::max(0, pipe.tokenizer->special_ids().pad >= 0 ? pipe.tokenizer->special_ids().pad
                                                                             : pipe.tokenizer->special_ids().eos);
  torch::manual_seed(seed);

  auto epoch_sequences = [&](int64_t epoch) {
    return pack_sequences(train, sample_order(train.size(), seed, epoch), context, packing, pad_id);
  };
  std::vector<PackedSequence> seqs = epoch_sequences(0);
  // Packing depends on each epoch's order, so epochs may hold different numbers of sequences and
  // steps: epoch_first_step[e] is the first step of epoch e, extended (by packing the epoch) on
  // demand. Everything here depends on (seed, data, context, global batch) only.
  std::vector<int64_t> epoch_first_step{0, (static_cast<int64_t>(seqs.size()) + global - 1) / global};
  auto epoch_of_step = [&](int64_t step) {
    while (epoch_first_step.back() <= step) {
      const int64_t e = static_cast<int64_t>(epoch_first_step.size()) - 1;
      const int64_t n = static_cast<int64_t>(epoch_sequences(e).size());
      epoch_first_step.push_back(epoch_first_step.back() + (n + global - 1) / global);
    }
    int64_t e = 0;
    while (epoch_first_step[e + 1] <= step) ++e;
    return e;
  };
  const int64_t steps_per_epoch = epoch_first_step[1];  // of epoch 0, for the log
  int64_t total_steps = 0;
  if (c.is_set("max_steps")) {
    total_steps = c.get_int("max_steps");
  } else {
    const int64_t epochs = c.get_int("num_epochs");
    while (static_cast<int64_t>(epoch_first_step.size()) - 1 < epochs) epoch_of_step(epoch_first_step.back());
    total_steps = epoch_first_step[static_cast<size_t>(epochs)];
  }
  std::vector<PackedSequence> valid_seqs;
  if (has_valid) valid_seqs = pack_sequences(valid, sample_order(valid.size(), seed, 0, false), context, packing, pad_id);
  const int64_t per_rank = (global + world - 1) / world;
  spdlog::info("{} sequences of {} tokens per epoch, {} steps per epoch, {} steps; global batch {} = {} rank(s) x "
               "{} micro-batch(es) of <= {}",
               seqs.size(), context, steps_per_epoch, total_steps, global, world, (per_rank + micro - 1) / micro, micro);

  const int zero_stage = static_cast<int>(c.get_int("distributed.zero_stage"));
  DataParallel dp(*comm, trainable, zero_stage);
  AdamWOptions ao;
  ao.beta1 = c.get_double("adam_beta1");
  ao.beta2 = c.get_double("adam_beta2");
  ao.eps = c.get_double("adam_epsilon");
  ao.weight_decay = c.get_double("weight_decay");
  AdamW opt(trainable, ao, dp.optimizer_map(), dp.optimizer_rank());
  if (zero_stage == 1 && world > 1)
    spdlog::debug("ZeRO-1 shard map:\n{}", dp.world_map().describe());
  const double peak_lr = c.get_double("learning_rate");
  const std::string schedule = c.get_string("lr_scheduler_type");
  const int64_t warmup = c.get_int("num_warmup_steps");
  const double max_norm = c.get_double("max_grad_norm");
  const int64_t eval_steps = c.get_int("eval_steps");

  // Fingerprints that a resumed run must share with its checkpoint.
  std::vector<std::string> base_files{(fs::path(base_dir) / "config.json").string()};
  for (const auto& f : hf_weight_files(base_dir)) base_files.push_back(f);
  const std::string base_hash = file_fingerprint(base_files);
  const std::string tokenizer_hash = pipe.tokenizer_hash();

  int64_t start_step = 0;
  TrainSummary summary;
  const std::string resume = c.get_string("resume");
  CheckpointState ck;
  if (resume == "auto") {
    summary.resumed_from = find_resume_checkpoint(out_dir, ck);
  } else if (resume != "none") {
    ck = load_checkpoint(resume);
    summary.resumed_from = resume;
  }
  const std::string metrics_path = (fs::path(out_dir) / "metrics.jsonl").string();
  if (!summary.resumed_from.empty()) {
    const std::string& from = summary.resumed_from;
    if (ck.base_hash != base_hash)
      throw InputError(from + ": cannot resume: the base weights differ (checkpoint " + ck.base_hash +
                       ", initial_base_model_ckpt_path now " + base_hash + ")");
    if (ck.tokenizer_hash != tokenizer_hash)
      throw InputError(from + ": cannot resume: the tokenizer differs (checkpoint " + ck.tokenizer_hash +
                       ", now " + tokenizer_hash + ")");
    std::map<std::string, torch::Tensor> saved(ck.trainable.begin(), ck.trainable.end());
    if (saved.size() != trainable.size())
      throw InputError(from + ": cannot resume: the checkpoint has " + std::to_string(saved.size()) +
                       " trainable tensors, this configuration " + std::to_string(trainable.size()) +
                       (use_lora ? " (other LoRA target_modules or modules_to_save?)" : " (LoRA vs full fine-tuning?)"));
    torch::NoGradGuard ng;
    for (auto& [name, p] : trainable) {
      auto it = saved.find(name);
      if (it == saved.end()) throw InputError(from + ": cannot resume: tensor " + name + " is not in the checkpoint");
      if (it->second.sizes() != p.sizes())
        throw InputError(from + ": cannot resume: tensor " + name + " has shape " + c10::str(it->second.sizes()) +
                         " in the checkpoint, " + c10::str(p.sizes()) + " now (other LoRA rank?)");
      p.copy_(it->second);
    }
    opt.load_state(ck.optimizer);  // this rank's range, whatever the world size that saved it
    opt.set_step_count(ck.adam_step);
    set_rng_bytes(ck.rng);
    start_step = ck.step;
    if (leader) truncate_metrics(metrics_path, start_step);
    spdlog::info("resumed from {} at step {} of {}", from, start_step, total_steps);
  }
  const int64_t every = c.get_int("checkpoint_every_n_steps");
  const int64_t keep = c.get_int("num_checkpoints_to_keep");
  // Collective: ZeRO-1 moments are gathered from every rank; rank 0 writes the one file (per
  // logical tensor, so any world size can resume it) and every rank waits until it is complete.
  // A single writer rather than parallel HDF5 (each rank writing its slice through MPI-IO): the
  // state is small for LoRA and one gather away for full fine-tuning of the models this targets;
  // a file written by one process can be written to a temporary name, fsync'ed and renamed into
  // place, which keeps checkpoints atomic on any filesystem; and parallel HDF5 needs MPI-IO file
  // locking that NFS-like shared filesystems often lack.
  auto checkpoint = [&](int64_t steps_done) {
    const auto full_m = dp.gather(opt.exp_avg());
    const auto full_v = dp.gather(opt.exp_avg_sq());
    std::string path;
    if (leader) {
      CheckpointState st;
      st.step = steps_done;
      st.epoch = epoch_of_step(steps_done);  // epochs completed
      st.total_steps = total_steps;
      st.adam_step = opt.step_count();
      st.config_yaml = c.dump_yaml();
      st.base_hash = base_hash;
      st.tokenizer_hash = tokenizer_hash;
      st.data_hash = train.data_hash;
      st.trainable = trainable;
      st.optimizer = opt.named_state(full_m, full_v);
      st.rng = rng_bytes();
      path = save_checkpoint(out_dir, st);
      prune_checkpoints(out_dir, keep);
      spdlog::info("checkpoint {} (step {})", path, steps_done);
    }
    pg.barrier();
    return path.empty() ? (fs::path(out_dir) / "checkpoints").string() : path;
  };
  g_stop = false;
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);

  std::ofstream metrics;
  if (leader) metrics.open(metrics_path, start_step > 0 ? std::ios::app : std::ios::trunc);
  const bool tty = leader && isatty(STDERR_FILENO);
  std::ofstream sample_log;  // test hook: which samples each rank trained on
  if (const char* dir = std::getenv("RINGTUNE_TEST_SAMPLE_LOG"))
    sample_log.open(std::string(dir) + "/samples.rank" + std::to_string(rank), std::ios::app);
  int64_t current_epoch = 0;
  model->train();
  for (int64_t step = start_step; step < total_steps; ++step) {
    const auto t_step = Clock::now();
    const int64_t epoch = epoch_of_step(step), in_epoch = step - epoch_first_step[epoch];
    const int64_t epoch_steps = epoch_first_step[epoch + 1] - epoch_first_step[epoch];
    if (epoch != current_epoch) {
      seqs = epoch_sequences(epoch);
      current_epoch = epoch;
    }
    const size_t begin = std::min(seqs.size(), static_cast<size_t>(in_epoch * global));
    const size_t end = std::min(seqs.size(), begin + static_cast<size_t>(global));
    // Every rank knows the whole global batch, so the normaliser (supervised tokens of the step,
    // all ranks together) is known before the forward passes and each micro-batch back-propagates
    // its loss sum divided by it: the summed gradient is that of the step's mean loss.
    int64_t supervised = 0;
    for (size_t i = begin; i < end; ++i) supervised += seqs[i].supervised;
    const auto [lo, hi] = rank_slice(begin, end, rank, world);
    double loss_sum = 0, tokens = 0, my_supervised = 0;
    for (size_t i = lo; i < hi; i += static_cast<size_t>(micro)) {
      SequenceBatch b;
      for (size_t j = i; j < std::min(hi, i + static_cast<size_t>(micro)); ++j) {
        b.rows.push_back(&seqs[j]);
        my_supervised += static_cast<double>(seqs[j].supervised);
        for (int32_t s : seqs[j].segments) tokens += s >= 0;
        if (sample_log.is_open())
          for (int64_t idx : seqs[j].samples) sample_log << epoch << " " << step << " " << idx << "\n";
      }
      if (dropout) torch::manual_seed(micro_batch_seed(seed, step, i));
      auto loss = batch_loss_sum(model, b);
      loss_sum += loss.item<double>();
      if (supervised > 0) (loss / static_cast<double>(supervised)).backward();
    }
    if (sample_log.is_open()) sample_log.flush();
    fault_hook(step + 1, rank);
    auto grad = dp.reduce_gradients();
    const double grad_norm = dp.global_norm(grad);
    if (max_norm > 0 && grad_norm > max_norm) grad.mul_(max_norm / (grad_norm + 1e-6));
    const double lr = lr_at(schedule, peak_lr, step, warmup, total_steps);
    if (supervised > 0) {
      auto values = opt.read_range();
      opt.step_range(lr, grad, values);
      opt.write_all(dp.gather(values));  // stage 1: every rank's updated range, all-gathered
    }
    for (auto& [name, p] : trainable) p.mutable_grad() = torch::Tensor();
    // One small collective per step for the statistics.
    const auto totals = dp.sum({loss_sum, tokens, my_supervised});
    if (static_cast<int64_t>(totals[2]) != supervised)
      throw Error("step " + std::to_string(step + 1) + ": ranks processed " + std::to_string(totals[2]) +
                  " supervised tokens, expected " + std::to_string(supervised));
    const double loss = supervised > 0 ? totals[0] / static_cast<double>(supervised) : std::nan("");
    summary.step_losses.push_back(loss);
    const double dt = seconds_since(t_step), elapsed = seconds_since(t_start);
    const double tok_s = totals[1] / std::max(dt, 1e-9);
    nlohmann::json m = {{"step", step + 1}, {"epoch", epoch}, {"loss", loss}, {"lr", lr},
                        {"grad_norm", grad_norm}, {"tokens_per_s", tok_s},
                        {"supervised_tokens", supervised}, {"elapsed_s", elapsed}};
    const bool last = step + 1 == total_steps;
    const bool eval_now = has_valid && (last || (eval_steps > 0 ? (step + 1) % eval_steps == 0 : in_epoch + 1 == epoch_steps));
    if (eval_now) {
      const double vl = evaluate(model, valid_seqs, c.get_int("eval_batch_size_per_device"), dp, rank, world);
      m["valid_loss"] = vl;
      m["valid_perplexity"] = std::exp(vl);
      summary.final_valid_loss = vl;
      spdlog::info("step {} validation loss {:.4f} perplexity {:.3f}", step + 1, vl, std::exp(vl));
    }
    if (leader) {
      metrics << m.dump() << "\n";
      metrics.flush();
    }
    const double eta = elapsed / static_cast<double>(step + 1 - start_step) * static_cast<double>(total_steps - step - 1);
    if (tty) {
      std::fprintf(stderr, "\rstep %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %.0fs   ",
                   static_cast<long long>(step + 1), static_cast<long long>(total_steps), loss, lr, tok_s, eta);
      if (last) std::fprintf(stderr, "\n");
    } else if (last || (step + 1) % std::max<int64_t>(1, total_steps / 20) == 0 || step < 3) {
      spdlog::info("step {}/{} loss {:.4f} lr {:.3e} grad_norm {:.3f} {:.0f} tok/s ETA {:.0f}s", step + 1, total_steps,
                   loss, lr, grad_norm, tok_s, eta);
    }
    const bool epoch_end = in_epoch + 1 == epoch_steps;
    std::string saved;
    if (last || (every > 0 ? (step + 1) % every == 0 : epoch_end)) saved = checkpoint(step + 1);
    maybe_signal_after("RINGTUNE_TEST_KILL_AT_STEP", step + 1, SIGKILL);
    maybe_signal_after("RINGTUNE_TEST_TERM_AT_STEP", step + 1, SIGTERM);
    // A stop (SIGTERM from Slurm or a user) seen by any rank stops every rank after this step.
    const bool stop = pg.any(g_stop.load());
    if (stop && !last) {
      if (saved.empty()) saved = checkpoint(step + 1);
      spdlog::warn("stop requested: checkpoint {} written after step {}", saved, step + 1);
      throw StopRequested{saved};
    }
  }
  summary.steps = total_steps;

  // Export (rank 0).
  model->eval();
  const std::string model_name = c.is_set("model_id") ? c.get_string("model_id") : base_dir;
  summary.export_dir = (fs::path(out_dir) / (use_lora ? "adapter" : "model")).string();
  if (leader) {
    if (use_lora)
      write_peft_adapter(summary.export_dir, model, lora, model_name);
    else
      write_hf_model_dir(summary.export_dir, model, base_dir);
  }
  pg.barrier();
  spdlog::info("done: {} steps in {:.1f}s, peak memory {} MiB; {} written to {}; metrics in {}", total_steps,
               seconds_since(t_start), peak_rss_mib(), use_lora ? "PEFT adapter" : "model",
               summary.export_dir, (fs::path(out_dir) / "metrics.jsonl").string());
  return summary;
}

}  // namespace ringtune
