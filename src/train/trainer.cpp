// The training run in phases; see trainer.h. run_training, at the bottom, is the table of
// contents: setup (process group, model, data, optimizer, resume), then per optimizer step the
// step itself, validation, metrics and checkpoints, then the export and teardown.
//
// Step arithmetic (StepPlan, step_plan.h): every optimizer step consumes the global batch of
// packed sequences in the global order of its epoch (the last step of an epoch may be short). The
// loss of a step is the sum of token cross-entropies over its supervised tokens divided by their
// count, which every rank knows before the forward passes (all ranks see the whole global batch),
// so each micro-batch back-propagates sum / count and the gradient summed over micro-batches and
// ranks is exactly the gradient of the step's mean.
#include "src/train/trainer.h"

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "distributed/comm.h"           // defines: Communicator, make_communicator
#include "distributed/data_parallel.h"  // defines: DataParallel
#include "distributed/device_plan.h"    // defines: choose_device, choose_backend
#include "distributed/process_group.h"  // defines: ProcessGroup
#include "distributed/progress.h"       // defines: note_progress, set_watchdog_step, CollectiveScope
#include "distributed/shard_map.h"      // defines: ShardMap
#include "distributed/watchdog.h"       // defines: Watchdog
#include "src/io/prepared_dataset.h"  // defines: PreparedDataset, prepare_dataset
#include "src/config/registry.h"        // defines: default_registry
#include "src/cpu_pool.h"               // defines: cpu_pool_trim
#include "src/error.h"
#include "src/exit_status.h"
#include "src/io/checkpoint.h"          // defines: CheckpointState, save/load/find_resume_checkpoint
#include "src/io/export.h"              // defines: write_peft_adapter, write_hf_model_dir
#include "src/log.h"                    // defines: init_logging
#include "src/optim/adamw.h"            // defines: AdamW
#include "src/optim/lr_schedule.h"      // defines: lr_at
#include "src/options/train_options.h"  // defines: TrainOptions
#include "src/test_hooks.h"             // defines: test_hooks::*
#include "src/train/evaluate.h"         // defines: evaluate_loss
#include "src/train/flops.h"            // defines: FlopsModel, flops_model, peak_flops
#include "src/train/loss.h"             // defines: batch_loss_sum
#include "src/train/metrics.h"          // defines: MetricsLog, StepMetrics
#include "src/train/model_setup.h"      // defines: setup_model, check_token_ids, padding_id
#include "src/io/atomic_file.h"         // defines: check_output_dir, ScratchDir, install_directory
#include "src/io/run_lock.h"            // defines: RunLock, remove_made_directories, outermost_missing_directory
#include "src/stop_signal.h"            // defines: install_stop_handlers, stop_signalled
#include "src/train/packing.h"          // defines: PackedSequence, pack_sequences, SequenceBatch
#include "src/train/step_plan.h"        // defines: StepPlan, Rows
#include "src/train/tensor_memory.h"    // defines: TensorMemoryTrace, tensor_memory_mark

namespace fs = std::filesystem;

namespace ringtune {

namespace {

using Clock = std::chrono::steady_clock;
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
double ms_since(Clock::time_point t0) { return 1000 * seconds_since(t0); }

// A "Vm...:" line of /proc/self/status in MiB (VmRSS: resident now, VmHWM: its peak), or -1.
int64_t status_mib(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stoll(line.substr(field.size())) / 1024;
  return -1;
}
int64_t rss_mib() { return status_mib("VmRSS:"); }
int64_t peak_rss_mib() { return status_mib("VmHWM:"); }

// A write under output_dir once the set-up has checked it (a checkpoint, the exported result):
// when it fails, the disk filled, the filesystem went read-only after I/O errors or permissions
// changed under the run. That is the environment's fault (exit 1), not the input's, whatever the
// writer calls it; the message keeps the path and the system's reason.
template <class Write>
auto environment_write(Write&& write) -> decltype(write()) {
  try {
    return write();
  } catch (const InputError& e) {
    throw EnvironmentError(e.what());
  } catch (const fs::filesystem_error& e) {
    throw EnvironmentError(exit_status(e).message);
  }
}


// ---------------------------------------------------------------------------------------------
// Reproducibility: the torch CPU generator (dropout) is saved in checkpoints, and dropout draws
// depend only on (seed, step, first global row of the micro-batch), so a resumed run draws what
// the uninterrupted one did, whatever the world size.

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
    throw InputError("ranks started differently from rank 0: " + bad +
                     "; every rank must run the same binary with the same configuration");
}

// The resolved config's values by dotted key ("lora_config.lora_alpha" -> "16.0"), from its YAML
// dump; a sequence or map below a key is kept as its flow text.
std::map<std::string, std::string> flat_config(const std::string& yaml) {
  std::map<std::string, std::string> out;
  std::function<void(const YAML::Node&, const std::string&)> walk = [&](const YAML::Node& n, const std::string& key) {
    if (n.IsMap() && (key.empty() || (!default_registry().find(key) && default_registry().is_section(key)))) {
      for (const auto& kv : n) walk(kv.second, key.empty() ? kv.first.as<std::string>() : key + "." + kv.first.as<std::string>());
      return;
    }
    std::function<void(YAML::Node)> flow = [&](YAML::Node v) {  // one line, whatever the dump's style
      v.SetStyle(YAML::EmitterStyle::Flow);
      if (v.IsMap())
        for (auto kv : v) flow(kv.second);
      else if (v.IsSequence())
        for (auto item : v) flow(item);
    };
    YAML::Node copy = YAML::Clone(n);
    flow(copy);
    YAML::Emitter e;
    e << copy;
    out[key] = one_line(e.c_str());
  };
  walk(YAML::Load(yaml), "");
  return out;
}

// Keys a resumed run may change without a word: where and how often it writes, how long it runs,
// how it splits the global batch, validation, logging and the launch.
bool operational_key(const std::string& key) {
  static const std::set<std::string> keys{"max_steps", "num_epochs", "min_update_steps", "memory_budget",
                                          "train_batch_size_per_device", "gradient_accumulation_steps",
                                          "global_batch_size", "eval_batch_size_per_device", "gradient_checkpointing",
                                          "no_gradient_checkpoint", "on_nonfinite", "valid_path", "test_path",
                                          "on_invalid_sample", "initial_base_model_ckpt_path", "tokenizer_path",
                                          "model_id", "lora_config.lora_dropout"};
  if (keys.count(key)) return true;
  const KeyDef* def = default_registry().find(key);
  if (!def) return false;
  return def->group == "checkpoint" || def->group == "compat" || def->group == "distributed" || def->group == "eval" ||
         def->group == "logging";
}

// ---------------------------------------------------------------------------------------------
// The trainer: state shared by the phases, each phase a member in the order run_training calls.

class Trainer {
 public:
  explicit Trainer(const TrainOptions& options) : o_(options), t_start_(Clock::now()) {}

  void setup_process_group();
  void load_resume_file();
  void setup_pipeline();
  void check_resume();
  void setup_data();
  void discard_built_caches();
  void setup_model();
  void setup_optimizer();
  void resume();

  int64_t first_step() const { return start_step_; }
  int64_t total_steps() const { return total_steps_; }
  StepMetrics step(int64_t step);
  bool evaluation_due(int64_t step);
  double evaluate(int64_t steps_done);
  void record(StepMetrics& m);
  // Time spent outside step(): validation after a step, a checkpoint after the previous one.
  void add_eval_ms(double ms) { eval_ms_ += ms; }
  void add_checkpoint_ms(double ms) { checkpoint_ms_ += ms; }
  bool checkpoint_due(int64_t step);
  bool periodic(int64_t every_steps, int64_t step);
  std::string save_checkpoint(int64_t steps_done);
  bool stop_requested() const { return pg_->any(stop_signalled() != 0); }

  void export_result();
  TrainSummary teardown();

 private:
  const std::vector<PackedSequence>& sequences(int64_t epoch);
  PreparedDataset prepared(const std::string& split, const std::string& path);

  const TrainOptions& o_;
  const Clock::time_point t_start_;
  // process group
  ProcessGroup* pg_ = nullptr;
  int rank_ = 0, world_ = 1;
  bool leader_ = true;
  std::string device_ = "cpu";
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<Watchdog> watchdog_;  // ends the job when a collective stalls
  // data
  DataPipeline pipe_;
  PreparedDataset train_, valid_;
  CheckpointState resume_file_;  // the checkpoint to resume: resume: PATH (load_resume_file) or auto's (check_resume)
  std::vector<std::string> built_caches_;  // rank 0: caches this run created (none was there before)
  bool planning_ = false;                   // setup_data is counting the run's steps
  int32_t pad_id_ = 0;
  std::unique_ptr<StepPlan> plan_;
  int64_t total_steps_ = 0;
  std::pair<int64_t, double> valid_loss_at_{-1, 0.0};  // (step, loss) of the latest validation
  std::unique_ptr<RunLock> run_lock_;  // rank 0: this run owns output_dir
  int64_t packed_epoch_ = -1;
  std::vector<PackedSequence> packed_, valid_seqs_;
  // model
  ModelSetup model_;
  bool dropout_ = false;
  NamedTensors trainable_;
  // optimizer
  std::unique_ptr<DataParallel> dp_;
  std::unique_ptr<AdamW> opt_;
  // resume, metrics, checkpoints
  std::string base_hash_, tokenizer_hash_;
  int64_t start_step_ = 0;
  bool checkpointed_ = false;  // rank 0 wrote a checkpoint in this run
  std::unique_ptr<MetricsLog> metrics_;
  test_hooks::SampleLog sample_log_;
  TrainSummary summary_;
  // metrics: MFU and the time since the previous line
  FlopsModel flops_;
  double peak_flops_ = 0;  // of one rank; 0: unknown
  double eval_ms_ = 0, checkpoint_ms_ = 0;
  Clock::time_point last_record_;  // the previous metrics line (first: when training began)
};

// ---- setup ---------------------------------------------------------------------------------

// Every rank runs the same command; rank 0 creates what is shared.
void Trainer::setup_process_group() {
  pg_ = &ProcessGroup::init();
  rank_ = pg_->rank();
  world_ = pg_->size();
  leader_ = rank_ == 0;
  check_same_everywhere(*pg_, o_.config_yaml);
  if (leader_) {
    check_output_dir(o_.output_dir, o_.origins.where("output_dir"));
    for (const char* sub : {"checkpoints", "prepared"}) {  // the run writes into these directories
      std::error_code ec;
      const fs::path p = fs::path(o_.output_dir) / sub;
      if (fs::exists(fs::symlink_status(p, ec)) && !fs::is_directory(p, ec))
        o_.origins.fail("output_dir", p.string() + " exists and is not a directory");
    }
    // The outermost directory this run makes on the way to output_dir: a refused run removes what
    // it made, parents included.
    std::error_code made;
    const std::string created_top = outermost_missing_directory(o_.output_dir);
    fs::create_directories(o_.output_dir, made);  // what check_output_dir cannot see (/sys refuses at mkdir)
    if (made) {
      const std::string why = made.message();
      remove_made_directories(o_.output_dir, created_top);  // the chain it made before the refusal
      o_.origins.fail("output_dir", o_.output_dir + ": cannot be created (" + why + ")");
    }
    run_lock_ = std::make_unique<RunLock>(o_.output_dir, o_.origins.where("output_dir"), created_top);
  }
  pg_->barrier();
  if (o_.per_rank_log_files) {
    try {
      init_logging(log_level_for(o_.log_level), rank_, world_, o_.output_dir);
    } catch (const spdlog::spdlog_ex& e) {  // OUTPUT_DIR/rankN.log is a directory, or cannot be created
      o_.origins.fail("logging.per_rank_files", e.what());
    }
  }

  // The rank's device, then a backend every rank agrees on (device_plan.h has the rules).
  const int gpus = visible_gpus();
  DeviceChoice dc;
  try {
    dc = choose_device(o_.device, pg_->local_rank(), pg_->local_size(), gpus);
  } catch (const std::invalid_argument& e) {
    o_.origins.fail("device", e.what());
  }
  device_ = dc.device;
  const bool shared = pg_->any(dc.shares_gpu);
  if (dc.shares_gpu)
    spdlog::warn("{} ranks on this host share {} GPU(s); rank {} computes on {}", pg_->local_size(), gpus, rank_,
                 device_);
  std::string reason, note;
  try {
    const BackendChoice bc = choose_backend(o_.backend, dc.gpu >= 0, shared, world_);
    reason = bc.reason;
    comm_ = make_communicator(bc.backend, dc.gpu >= 0, &note);
  } catch (const std::exception& e) {
    o_.origins.fail("distributed.backend", e.what());
  }
  if (world_ > 1)
    spdlog::info("{} ranks, device {}; backend {}{}", world_, device_, reason,
                 comm_->backend() == "nccl" || reason.rfind("auto", 0) == 0 ? "; " + note : "");
  sample_log_ = test_hooks::SampleLog(rank_);
  try {
    watchdog_ = std::make_unique<Watchdog>(
        *pg_, WatchdogOptions{o_.timeout_s, 0},
        [](const std::string& msg) {
          spdlog::error("{}", msg);
          spdlog::default_logger()->flush();
        },
        [](const std::string& msg) { spdlog::warn("{}", msg); });
  } catch (const std::runtime_error& e) {
    throw EnvironmentError(e.what());
  }
  if (watchdog_->running() && leader_) spdlog::info("{}", watchdog_->describe());
}

// Rank 0 tokenizes a split into the prepared cache; the others read it once it is there.
PreparedDataset Trainer::prepared(const std::string& split, const std::string& path) {
  const std::string cache = prepared_dataset_path(o_.output_dir, split);
  if (leader_ && prepare_dataset(pipe_, {path}, cache).created) built_caches_.push_back(cache);
  pg_->barrier();
  return PreparedDataset::load(cache);
}

// A run refused during setup (a bad validation split, a resume that does not fit, ...) leaves no
// cache it built: the output directory is as it was before the run.
void Trainer::discard_built_caches() {
  std::error_code ec;
  for (const auto& cache : built_caches_) fs::remove(cache, ec);
  built_caches_.clear();
  const fs::path dir = fs::path(prepared_dataset_path(o_.output_dir, "train")).parent_path();
  if (leader_ && fs::is_directory(dir, ec) && fs::is_empty(dir, ec)) fs::remove(dir, ec);
}

// The packed sequences of an epoch (the most recent epoch is kept).
const std::vector<PackedSequence>& Trainer::sequences(int64_t epoch) {
  if (epoch != packed_epoch_) {
    // Planning packs every epoch of the run once before the first step: a stop signal ends it
    // (during training a signal stops after the step instead).
    if (planning_) throw_if_stop_signalled("planning the run's epochs", "nothing was trained");
    packed_ = pack_sequences(train_, sample_order(train_.size(), o_.seed, epoch), o_.data.options.context_length,
                             o_.packing, pad_id_);
    packed_epoch_ = epoch;
    if (planning_) test_hooks::epoch_planned(epoch);
  }
  return packed_;
}

// Tokenized splits, the padding id, the step plan (which depends on the data and the global batch,
// never on the world size) and the validation sequences.
// The tokenizer and prompt format, checked against the model (no data is read yet).
void Trainer::setup_pipeline() {
  pipe_ = make_data_pipeline(o_.data);
  check_data_fits_model(o_.model, *pipe_.tokenizer, pipe_.tokenizer_path);
  spdlog::info("prompt format: {}", pipe_.renderer->describe());
}

void Trainer::setup_data() {
  train_ = prepared("train", o_.train_path);
  if (train_.size() == 0) o_.origins.fail("train_path", "no usable samples");
  if (!o_.valid_path.empty()) {
    valid_ = prepared("valid", o_.valid_path);
  }
  pad_id_ = padding_id(*pipe_.tokenizer);
  const int64_t vocab = model_.model->config().vocab_size;
  const std::string tokenizer = o_.origins.where("tokenizer_path");
  check_token_ids(train_.ids, vocab, tokenizer);
  check_token_ids(std::vector<int32_t>{pad_id_}, vocab, tokenizer + " (padding id)");
  const int64_t context = o_.data.options.context_length, global = o_.global_batch_at(world_);
  plan_ = std::make_unique<StepPlan>([this](int64_t e) { return static_cast<int64_t>(sequences(e).size()); }, global);
  int64_t epochs = o_.num_epochs;
  planning_ = true;
  if (o_.min_update_steps > 0) {  // llmforge: whole epochs until at least min_update_steps steps
    epochs = 1;
    while (plan_->first_step(epochs) < o_.min_update_steps) {
      if (++epochs > o_.most_epochs)
        o_.origins.fail("min_update_steps", std::to_string(o_.min_update_steps) + " steps need more than " +
                                                std::to_string(o_.most_epochs) + " epochs of this data (" +
                                                std::to_string(plan_->steps_in(0)) + " steps in the first); set max_steps");
    }
    spdlog::info("min_update_steps {}: {} epoch(s)", o_.min_update_steps, epochs);
  }
  total_steps_ = plan_->total_steps(o_.max_steps, epochs);
  planning_ = false;
  if (!o_.valid_path.empty()) valid_seqs_ = pack_in_file_order(valid_, context, o_.packing, pad_id_);
  const int64_t per_rank = (global + world_ - 1) / world_;
  spdlog::info("{} sequences of {}{} tokens per epoch, {} steps per epoch, {} steps; global batch {} = {} rank(s) x "
               "{} micro-batch(es) of <= {}",
               plan_->sequences_in(0), o_.pad_to_longest ? "up to " : "", context, plan_->steps_in(0), total_steps_, global, world_,
               (per_rank + o_.micro_batch - 1) / o_.micro_batch, o_.micro_batch);
}

// `resume: PATH` is read (checksums verified) before the model loads and data is prepared, so a
// file that is not a good checkpoint costs nothing and leaves nothing behind.
void Trainer::load_resume_file() {
  if (o_.resume == "auto" || o_.resume == "none") return;
  try {
    resume_file_ = load_checkpoint(o_.resume);
  } catch (const InputError& e) {
    o_.origins.fail("resume", e.what());
  }
}

void Trainer::setup_model() {
  ModelOptions mo = o_.model;
  mo.device = device_;
  model_ = ringtune::setup_model(mo);
  if (!model_.adapter.kind.empty()) spdlog::info("initial adapter: {}", model_.adapter.describe());
  const LoraOptions& lora = model_.lora_options;
  if (!model_.adapted.empty())
    spdlog::info("LoRA r={} alpha={} scale={:.4g} on {} modules", lora.r, lora.lora_alpha, lora_scale(lora),
                 model_.adapted.size());
  dropout_ = model_.lora && lora.lora_dropout > 0;
  int64_t n_trainable = 0, n_total = 0;
  int64_t nf4_bytes = 0;
  for (const auto& [name, lin] : nf4_linears(model_.model)) {  // NF4 weights are not parameters
    n_total += lin->nf4->numel();
    nf4_bytes += lin->nf4->bytes();
  }
  if (o_.model.quantization == "nf4")
    spdlog::info("QLoRA: decoder projections in NF4 (block 64, double-quantized scales): {:.1f} MiB",
                 nf4_bytes / 1048576.0);
  for (const auto& p : model_.model->named_parameters()) {
    n_total += p.value().numel();
    if (p.value().requires_grad()) {
      trainable_.emplace_back(p.key(), p.value());
      n_trainable += p.value().numel();
    }
  }
  spdlog::info("trainable parameters: {} of {} ({:.3f}%)", n_trainable, n_total, 100.0 * n_trainable / n_total);
  if (o_.adamw.eight_bit) {  // refused before any data is prepared
    int64_t largest = 0;
    for (const auto& [name, t] : trainable_) largest = std::max<int64_t>(largest, t.numel());
    if (largest < o_.adamw.min_8bit_size)
      o_.origins.fail("optimizer", "adamw_8bit keeps tensors under " + std::to_string(o_.adamw.min_8bit_size) +
                                       " elements in float32 and the largest trainable tensor has " +
                                       std::to_string(largest) + ": nothing would be 8-bit; use adamw");
  }
  flops_ = flops_model(model_.model);
  if (leader_) {  // metrics.jsonl is rank 0's
    std::string source;
    peak_flops_ = peak_flops(o_.peak_flops, device_, o_.model.dtype, at::get_num_threads(), &source);
    spdlog::info("mfu: {:.4g} FLOPs per token at context {} (frozen matmul {}, trained {}); peak {:.4g} FLOP/s per "
                 "rank ({})",
                 flops_.per_token(o_.data.options.context_length), o_.data.options.context_length,
                 flops_.frozen_matmul, flops_.trainable_matmul, peak_flops_, source);
  }
  model_.model->train();
  torch::manual_seed(o_.seed);
}

// The gradient exchange (ZeRO-0/1) and AdamW over this rank's range of the trainable tensors.
void Trainer::setup_optimizer() {
  dp_ = std::make_unique<DataParallel>(*comm_, trainable_, o_.zero_stage, o_.adamw.eight_bit ? AdamWOptions::kBlock : 1);
  opt_ = std::make_unique<AdamW>(trainable_, o_.adamw, dp_->optimizer_map(), dp_->optimizer_rank());
  int64_t big = 0, total = 0;
  for (const auto& [name, t] : trainable_) {
    total += t.numel();
    if (t.numel() >= o_.adamw.min_8bit_size) big += t.numel();
  }
  spdlog::info("optimizer: {}, moment state {:.2f} MiB on this rank{}", o_.adamw.eight_bit ? "adamw_8bit" : "adamw",
               opt_->state_bytes() / 1048576.0,
               o_.adamw.eight_bit ? fmt::format(" ({} of {} trainable values in 8 bits; tensors under {} elements keep "
                                                "float32 moments)", big, total, o_.adamw.min_8bit_size)
                                  : std::string());
  if (o_.zero_stage == 1 && world_ > 1) spdlog::debug("ZeRO-1 shard map:\n{}", dp_->world_map().describe());
}

// resume: auto continues from the newest checkpoint that loads, a path from that file; the base
// weights, tokenizer and trainable tensors must be those of the checkpoint.
// The checkpoint to resume (resume: PATH, or auto's newest that loads) is checked against this
// run's base weights, tokenizer and trainable tensors before any data is prepared, so a run that
// cannot continue it is refused at once and leaves no cache behind.
void Trainer::check_resume() {
  base_hash_ = base_fingerprint(o_.model.base_dir);
  // The trained adapter fits the base as the run saw it: a quantized base is another base.
  if (o_.model.quantization == "nf4") base_hash_ += "+nf4-b64-dq";
  tokenizer_hash_ = pipe_.tokenizer_hash();

  CheckpointState& ck = resume_file_;  // resume: PATH was read by load_resume_file before any work
  std::string& from = summary_.resumed_from;
  if (o_.resume == "auto") {
    from = find_resume_checkpoint(o_.output_dir, ck);
  } else if (o_.resume != "none") {
    from = o_.resume;
  }
  if (from.empty()) return;
  if (ck.base_hash != base_hash_) {
    const auto plain = [](const std::string& h) { return h.substr(0, h.find('+')); };
    if (plain(ck.base_hash) == plain(base_hash_))
      throw InputError(from + ": cannot resume: the quantization of the base differs (checkpoint " +
                       (ck.base_hash.find("+nf4") != std::string::npos ? "nf4" : "none") + ", quantization now " +
                       o_.model.quantization + ")");
    throw InputError(from + ": cannot resume: the base weights differ (checkpoint " + ck.base_hash +
                     ", initial_base_model_ckpt_path now " + base_hash_ + ")");
  }
  if (ck.tokenizer_hash != tokenizer_hash_)
    throw InputError(from + ": cannot resume: the tokenizer differs (checkpoint " + ck.tokenizer_hash + ", now " +
                     tokenizer_hash_ + ")");
  std::map<std::string, torch::Tensor> saved(ck.trainable.begin(), ck.trainable.end());
  if (saved.size() != trainable_.size())
    throw InputError(from + ": cannot resume: the checkpoint has " + std::to_string(saved.size()) +
                     " trainable tensors, this configuration " + std::to_string(trainable_.size()) +
                     (model_.lora ? " (other LoRA target_modules or modules_to_save?)" : " (LoRA vs full fine-tuning?)"));
  for (auto& [name, p] : trainable_) {
    auto it = saved.find(name);
    if (it == saved.end()) throw InputError(from + ": cannot resume: tensor " + name + " is not in the checkpoint");
    if (it->second.sizes() != p.sizes())
      throw InputError(from + ": cannot resume: tensor " + name + " has shape " + c10::str(it->second.sizes()) +
                       " in the checkpoint, " + c10::str(p.sizes()) + " now (other LoRA rank?)");
  }
  // The step's sample positions are step x global batch: another batch would repeat or skip samples.
  const int64_t global = o_.global_batch_at(world_);
  if (ck.global_batch > 0 && ck.global_batch != global)
    o_.origins.fail("global_batch_size",
                    from + ": cannot resume: its run took " + std::to_string(ck.global_batch) + " sequences a step, this one " +
                        std::to_string(global) + " (" + std::to_string(world_) +
                        " rank(s)); set global_batch_size: " + std::to_string(ck.global_batch) + " to continue it");
  // What else differs from the checkpoint's run: the adapter's scale is refused (its trained
  // weights mean something else under another scale); the rest is said once, since the steps from
  // here on follow the new values.
  std::map<std::string, std::string> before, now;
  try {
    before = flat_config(ck.config_yaml);
    now = flat_config(o_.config_yaml);
  } catch (const YAML::Exception& e) {
    spdlog::warn("{}: its stored configuration cannot be compared with this one ({})", from, e.what());
    return;
  }
  std::string changed;
  for (const auto& key : default_registry().keys()) {
    const auto b = before.find(key.name), n = now.find(key.name);
    const std::string old_value = b == before.end() ? "(unset)" : b->second, new_value = n == now.end() ? "(unset)" : n->second;
    if (old_value == new_value || operational_key(key.name)) continue;
    if (model_.lora && (key.name == "lora_config.lora_alpha" || key.name == "lora_config.use_rslora"))
      o_.origins.fail(key.name, from + ": cannot resume: its adapter was trained with " + key.name + " " + old_value +
                                    ", this run sets " + new_value + " (the adapter's scale would change)");
    changed += (changed.empty() ? "" : ", ") + key.name + " " + old_value + " -> " + new_value;
  }
  if (!changed.empty())
    spdlog::warn("resuming {} with settings that differ from its run: {}; the steps from {} on follow the new ones", from,
                 changed, ck.step);
}

// Puts the checked checkpoint's tensors, optimizer state and random state in place.
void Trainer::resume() {
  const std::string& from = summary_.resumed_from;
  if (!from.empty()) {
    CheckpointState ck = std::move(resume_file_);
    resume_file_ = CheckpointState();
    if (ck.step > total_steps_)
      o_.origins.fail(o_.max_steps > 0 ? "max_steps" : "num_epochs",
                      from + ": cannot resume: it is at step " + std::to_string(ck.step) + ", past the " +
                          std::to_string(total_steps_) + " steps of this run");
    if (!ck.data_hash.empty() && ck.data_hash != train_.data_hash)
      spdlog::warn("resuming {}: the training data differs from its run's (fingerprint {}, now {}); the steps from {} on "
                   "take the new data's samples at the same positions",
                   from, ck.data_hash, train_.data_hash, ck.step);
    std::map<std::string, torch::Tensor> saved(ck.trainable.begin(), ck.trainable.end());
    torch::NoGradGuard ng;
    for (auto& [name, p] : trainable_) p.copy_(saved.at(name));
    opt_->load_master(ck.trainable);  // this rank's range, whatever the world size that saved it
    opt_->load_state(ck.optimizer);
    opt_->set_step_count(ck.adam_step);
    set_rng_bytes(ck.rng);
    start_step_ = ck.step;
    spdlog::info("resumed from {} at step {} of {}", from, start_step_, total_steps_);
  }
  metrics_ = std::make_unique<MetricsLog>((fs::path(o_.output_dir) / "metrics.jsonl").string(), leader_, start_step_,
                                          total_steps_);
  last_record_ = Clock::now();
}

// ---- one optimizer step ----------------------------------------------------------------------

namespace {

// RINGTUNE_PROFILE=FILE[:STEP]: libtorch's operator trace of optimizer step STEP (default 3), in
// the Chrome trace format, to FILE (FILE.rankN on N > 1 ranks); bench/profile_step.py sums it by
// operator. nullptr for other steps. The variable is read once.
std::unique_ptr<torch::autograd::profiler::RecordProfile> profile_of_step(int64_t step, int rank, int world) {
  static const std::pair<std::string, int64_t> request = [] {
    const char* v = std::getenv("RINGTUNE_PROFILE");
    std::string file = v ? v : "";
    int64_t at = 3;
    if (const auto colon = file.rfind(':'); colon != std::string::npos && colon + 1 < file.size() &&
                                            file.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
      at = std::stoll(file.substr(colon + 1));
      file.resize(colon);
    }
    return std::make_pair(file, at);
  }();
  const auto& [file, at] = request;
  if (file.empty() || step + 1 != at) return nullptr;
  const std::string path = world > 1 ? file + ".rank" + std::to_string(rank) : file;
  if (!std::ofstream(path)) {  // libtorch would print a stack trace at the end of the step
    spdlog::warn("RINGTUNE_PROFILE: cannot write {}: step {} is not profiled", path, at);
    return nullptr;
  }
  spdlog::info("profiling step {} into {}", at, path);
  return std::make_unique<torch::autograd::profiler::RecordProfile>(path);
}

}  // namespace

StepMetrics Trainer::step(int64_t step) {
  const auto profile = profile_of_step(step, rank_, world_);
  const auto t_step = Clock::now();
  set_watchdog_step(step);
  StepMetrics m;
  const int64_t epoch = plan_->epoch_of(step);
  const std::vector<PackedSequence>& seqs = sequences(epoch);
  const Rows rows = plan_->rows(step);
  int64_t supervised = 0;  // the normaliser: supervised tokens of the whole global batch
  for (size_t i = rows.begin; i < rows.end; ++i) supervised += seqs[i].supervised;
  double loss_sum = 0, tokens = 0, my_supervised = 0;
  int64_t seq_len = 0;  // the longest micro-batch row fed on this rank
  for (const Rows& micro : StepPlan::micro_batches(plan_->rank_rows(step, rank_, world_), o_.micro_batch)) {
    auto t0 = Clock::now();
    SequenceBatch b;
    b.pad_to_longest = o_.pad_to_longest;
    for (size_t j = micro.begin; j < micro.end; ++j) {
      b.rows.push_back(&seqs[j]);
      my_supervised += static_cast<double>(seqs[j].supervised);
      for (int32_t s : seqs[j].segments) tokens += s >= 0;
      sample_log_.add(epoch, step, seqs[j].samples);
    }
    if (dropout_) torch::manual_seed(micro_batch_seed(o_.seed, step, micro.begin));
    seq_len = std::max(seq_len, b.length());
    m.ms.data += ms_since(t0);
    t0 = Clock::now();
    auto loss = batch_loss_sum(model_.model, b);
    loss_sum += loss.item<double>();
    tensor_memory_mark("forward");
    m.ms.forward += ms_since(t0);
    t0 = Clock::now();
    if (supervised > 0) (loss / static_cast<double>(supervised)).backward();
    tensor_memory_mark("backward");
    dp_->accumulate_gradients();  // in float32, whatever the parameters' dtype
    tensor_memory_mark("gradient accumulation");
    m.ms.backward += ms_since(t0);
    note_progress();
  }
  sample_log_.flush();
  if (test_hooks::before_gradient_reduction(step + 1, rank_)) loss_sum = std::nan("");

  // The exchange as one watched wait (NCCL's collectives return at once and the wait happens at
  // the host synchronisation that follows; the MPI ones are watched call by call inside).
  auto t_comm = Clock::now();
  std::optional<CollectiveScope> exchange(std::in_place, "gradient exchange", dp_->world_map().total());
  auto grad = dp_->reduce_gradients();
  const double grad_norm = dp_->global_norm(grad);
  // One small collective per step for the statistics (before the update: a non-finite loss or
  // gradient norm, the same on every rank, must not reach the weights).
  const auto totals = dp_->sum({loss_sum, tokens, my_supervised});
  exchange.reset();
  m.ms.comm += ms_since(t_comm);
  const double mean_loss = supervised > 0 ? totals[0] / static_cast<double>(supervised) : 0.0;
  const bool finite = std::isfinite(grad_norm) && std::isfinite(mean_loss);
  const auto number = [](double x) {
    return std::isnan(x) ? std::string("nan") : std::isinf(x) ? std::string(x > 0 ? "inf" : "-inf") : fmt::format("{:.6g}", x);
  };
  if (!finite && o_.on_nonfinite == "stop") {
    const auto kept = list_checkpoints(o_.output_dir);
    throw EnvironmentError("step " + std::to_string(step + 1) + ": the loss is " + number(mean_loss) +
                           " and the gradient norm " + number(grad_norm) +
                           ": training stopped (on_nonfinite: stop) without updating the weights or writing a "
                           "checkpoint of this state; " +
                           (kept.empty() ? std::string("no checkpoint was written before it")
                                         : "the last checkpoint, " + kept.front() + ", is kept") +
                           " (check the data and the base weights, lower learning_rate, or set on_nonfinite: "
                           "skip_step)");
  }
  if (!finite) {
    ++summary_.skipped_steps;
    spdlog::warn("step {}: loss {} gradient norm {}: the optimizer step is skipped (on_nonfinite: skip_step; {} "
                 "so far)",
                 step + 1, number(mean_loss), number(grad_norm), summary_.skipped_steps);
  }
  if (o_.max_grad_norm > 0 && grad_norm > o_.max_grad_norm) grad.mul_(o_.max_grad_norm / (grad_norm + 1e-6));
  const double lr = lr_at(o_.lr_schedule, o_.learning_rate, step, o_.warmup_steps, total_steps_);
  if (supervised > 0 && finite) {
    auto t0 = Clock::now();
    opt_->step_range(lr, grad);  // the float32 master of this rank's range
    m.ms.optimizer += ms_since(t0);
    t0 = Clock::now();
    auto all = dp_->gather(opt_->master());  // stage 1: every rank's range, all-gathered
    m.ms.comm += ms_since(t0);
    t0 = Clock::now();
    opt_->write_all(all);
    tensor_memory_mark("optimizer step");
    m.ms.optimizer += ms_since(t0);
  }

  if (static_cast<int64_t>(totals[2]) != supervised)
    throw Error("step " + std::to_string(step + 1) + ": ranks processed " + std::to_string(totals[2]) +
                " supervised tokens, expected " + std::to_string(supervised));
  m.step = step + 1;
  m.epoch = epoch;
  m.loss = supervised > 0 ? totals[0] / static_cast<double>(supervised) : std::nan("");
  m.lr = lr;
  m.grad_norm = grad_norm;
  m.tokens_per_s = totals[1] / std::max(seconds_since(t_step), 1e-9);
  if (peak_flops_ > 0) m.mfu = m.tokens_per_s * flops_.per_token(seq_len) / (peak_flops_ * world_);
  m.supervised_tokens = supervised;
  m.seq_len = seq_len;
  m.elapsed_s = seconds_since(t_start_);
  summary_.step_losses.push_back(m.loss);
  return m;
}

// The time since the previous line (the first: since training began) and memory, then the line.
void Trainer::record(StepMetrics& m) {
  const auto now = Clock::now();
  m.ms.eval = eval_ms_;
  m.ms.checkpoint = checkpoint_ms_;
  m.ms.step = std::chrono::duration<double, std::milli>(now - last_record_).count();
  eval_ms_ = checkpoint_ms_ = 0;
  last_record_ = now;
  m.rss_mib = rss_mib();
  m.peak_rss_mib = peak_rss_mib();
  metrics_->record(m);
}

// ---- validation -----------------------------------------------------------------------------

// Every `every_steps` steps when > 0; else at the end of every epoch, or of every every_n_epochs-th.
bool Trainer::periodic(int64_t every_steps, int64_t step) {
  if (every_steps > 0) return (step + 1) % every_steps == 0;
  if (!plan_->ends_epoch(step)) return false;
  return o_.every_n_epochs <= 1 || (plan_->epoch_of(step) + 1) % o_.every_n_epochs == 0;
}

// With eval_steps, every eval_steps steps; else at each epoch's end; and after the last step.
bool Trainer::evaluation_due(int64_t step) {
  if (o_.valid_path.empty()) return false;
  if (step + 1 == total_steps_) return true;
  return periodic(o_.eval_steps, step);
}

// Mean loss over every supervised token of the validation split (no gradient); each rank takes
// its slice and the sums are added over ranks.
double Trainer::evaluate(int64_t steps_done) {
  const auto [lo, hi] = rank_slice(0, valid_seqs_.size(), rank_, world_);
  const LossEval e = evaluate_loss(model_.model, valid_seqs_, o_.eval_batch, lo, hi);
  const auto total = dp_->sum({e.loss_sum, static_cast<double>(e.supervised_tokens)});
  const double loss = total[1] > 0 ? total[0] / total[1] : std::nan("");
  summary_.final_valid_loss = loss;
  valid_loss_at_ = {steps_done, loss};
  spdlog::info("step {} validation loss {:.4f} perplexity {:.3f}", steps_done, loss, std::exp(loss));
  return loss;
}

// ---- checkpoints ----------------------------------------------------------------------------

// With checkpoint_every_n_steps, every that many steps; else at each epoch's end; and after the
// last step.
bool Trainer::checkpoint_due(int64_t step) {
  if (step + 1 == total_steps_) return true;
  return periodic(o_.checkpoint_every, step);
}

// Collective: ZeRO-1 moments are gathered from every rank; rank 0 writes the one file (per
// logical tensor, so any world size can resume it) and every rank waits until it is complete.
// A single writer rather than parallel HDF5 (each rank writing its slice through MPI-IO): the
// state is small for LoRA and one gather away for full fine-tuning of the models this targets;
// a file written by one process can be written to a temporary name, fsync'ed and renamed into
// place, which keeps checkpoints atomic on any filesystem; and parallel HDF5 needs MPI-IO file
// locking that NFS-like shared filesystems often lack.
std::string Trainer::save_checkpoint(int64_t steps_done) {
  const auto full_master = dp_->gather(opt_->master());
  const auto sides = opt_->side_counts();
  const auto full_m = dp_->gather(opt_->exp_avg(), sides);
  const auto full_v = dp_->gather(opt_->exp_avg_sq(), sides);
  at::Tensor full_qm, full_qv;  // 8-bit state: the codes too
  if (opt_->codes_avg().defined()) {
    full_qm = dp_->gather(opt_->codes_avg());
    full_qv = dp_->gather(opt_->codes_avg_sq());
  }
  std::string path;
  if (leader_) {
    CheckpointState st;
    st.step = steps_done;
    st.epoch = plan_->epoch_of(steps_done);  // epochs completed
    st.total_steps = total_steps_;
    st.adam_step = opt_->step_count();
    st.config_yaml = o_.config_yaml;
    st.base_hash = base_hash_;
    st.tokenizer_hash = tokenizer_hash_;
    st.data_hash = train_.data_hash;
    st.global_batch = o_.global_batch_at(world_);
    st.trainable = opt_->named_values(full_master);  // float32 masters, not the rounded parameters
    st.optimizer = opt_->named_state(full_m, full_v, full_qm, full_qv);
    st.rng = rng_bytes();
    if (valid_loss_at_.first == steps_done) st.valid_loss = valid_loss_at_.second;
    path = environment_write([&] { return ringtune::save_checkpoint(o_.output_dir, st); });
    if (!checkpointed_) {  // the first of this run: an earlier run's later checkpoints are abandoned
      const auto removed =
          environment_write([&] { return remove_checkpoints_after(o_.output_dir, start_step_, path); });
      std::string names;
      for (const auto& n : removed) names += (names.empty() ? "" : ", ") + n;
      if (!removed.empty())
        spdlog::warn("removed {} checkpoint(s) of an earlier run past step {} ({}): this run {}", removed.size(),
                     start_step_, names,
                     summary_.resumed_from.empty() ? "started afresh" : "continued from " + summary_.resumed_from);
    }
    checkpointed_ = true;
    environment_write([&] { prune_checkpoints(o_.output_dir, o_.checkpoints_to_keep); });
    spdlog::info("checkpoint {} (step {})", path, steps_done);
  }
  pg_->barrier();
  return path.empty() ? checkpoint_path(o_.output_dir, steps_done) : path;  // rank 0 wrote it under this name
}

// ---- the end ----------------------------------------------------------------------------------

// Rank 0 writes the PEFT adapter (LoRA) or the Hugging Face model directory (full fine-tuning),
// built beside it and renamed into place: a failure (the disk filled) leaves the directory as it
// was, never an adapter without its config; the last step's checkpoint is written already, so
// `ringtune export` can make it again.
void Trainer::export_result() {
  model_.model->eval();
  summary_.export_dir = (fs::path(o_.output_dir) / (model_.lora ? "adapter" : "model")).string();
  if (leader_) {
    test_hooks::export_started();
    try {
      environment_write([&] {
        ScratchDir built(summary_.export_dir + ".tmp-");
        if (model_.lora)
          write_peft_adapter(built.path(), model_.model, model_.lora_options, o_.model_name);
        else
          write_hf_model_dir(built.path(), model_.model, o_.model.base_dir);
        install_directory(built, summary_.export_dir);
      });
    } catch (const EnvironmentError& e) {
      throw EnvironmentError(summary_.export_dir + ": not written (" + e.what() +
                             "); the last checkpoint holds the result: ringtune export --checkpoint " + o_.output_dir);
    }
  }
  pg_->barrier();
}

TrainSummary Trainer::teardown() {
  summary_.steps = total_steps_;
  spdlog::info("done: {} steps in {:.1f}s, peak memory {} MiB; {} written to {}; metrics in {}", total_steps_,
               seconds_since(t_start_), peak_rss_mib(), model_.lora ? "PEFT adapter" : "model", summary_.export_dir,
               metrics_->path());
  return summary_;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The run

TrainSummary run_training(const TrainOptions& options) {
  Trainer t(options);
  TensorMemoryTrace trace;  // RINGTUNE_TRACE_MEMORY=1: live tensor bytes at the phases of a step
  // From here a stop signal sets a flag: data preparation ends with Interrupted, training stops
  // after the current step with a checkpoint.
  install_stop_handlers();

  // Setup. Every rank runs this same function.
  t.setup_process_group();
  t.load_resume_file();
  t.setup_model();  // first: bad weights or adapters are refused before any data is prepared
  t.setup_pipeline();
  t.check_resume();  // a checkpoint this run cannot continue is refused before any data is prepared
  try {
    t.setup_data();
    t.setup_optimizer();
    t.resume();
  } catch (const Error&) {
    t.discard_built_caches();
    throw;
  }
  cpu_pool_trim();  // the loading's temporaries out of the pool: the steps set its size
  tensor_memory_mark("setup");

  // Training: one optimizer step at a time; validation, metrics and checkpoints between steps.
  for (int64_t step = t.first_step(); step < t.total_steps(); ++step) {
    StepMetrics m = t.step(step);
    if (t.evaluation_due(step)) {
      const auto t0 = Clock::now();
      m.valid_loss = t.evaluate(step + 1);
      t.add_eval_ms(ms_since(t0));
    }
    t.record(m);
    std::string saved;
    if (t.checkpoint_due(step)) {  // its time goes in the next step's line
      const auto t0 = Clock::now();
      saved = t.save_checkpoint(step + 1);
      t.add_checkpoint_ms(ms_since(t0));
    }
    test_hooks::after_step(step + 1);
    // A stop (SIGTERM from Slurm or a user) seen by any rank stops every rank after this step.
    const bool last = step + 1 == t.total_steps();
    if (t.stop_requested() && !last) {
      if (saved.empty()) saved = t.save_checkpoint(step + 1);
      spdlog::warn("stop requested: checkpoint {} written after step {}", saved, step + 1);
      throw StopRequested{saved};
    }
  }

  // The result in Hugging Face formats, then the summary.
  t.export_result();
  return t.teardown();
}

}  // namespace ringtune
