// The memory estimate (src/train/memory_estimate.h) held to what libtorch does: the trainable
// tensors it counts are those apply_lora makes, and the activation bytes it derives are the tensor
// bytes libtorch's CPU allocator holds after a forward pass (and at the peak of forward + backward),
// counted through c10's memory-reporting hook (the one the profiler uses), for float32 and
// bfloat16, LoRA and full fine-tuning, with and without gradient checkpointing and LoRA dropout.
// Peak RSS of whole runs against the estimate: bench/memory_estimate.sh.
#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <map>

#include "model/llama.h"
#include "model/lora.h"
#include "src/config/byte_size.h"
#include "src/train/loss.h"
#include "src/train/memory_estimate.h"
#include "src/config/registry.h"
#include "src/error.h"
#include "src/options/train_options.h"
#include "src/train/memory_plan.h"
#include "src/train/packing.h"
#include "test_util.h"

using namespace ringtune;

namespace {

LlamaConfig small_config(bool tied = false) {
  LlamaConfig c;
  c.vocab_size = 512;
  c.hidden_size = 128;
  c.intermediate_size = 352;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 128;
  c.tie_word_embeddings = tied;
  return c;
}

std::map<std::string, std::vector<int64_t>> built_trainable(const LlamaConfig& c, const std::optional<LoraOptions>& o) {
  LlamaForCausalLM m(c);
  if (o) apply_lora(m, *o);
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& p : m->named_parameters())
    if (p.value().requires_grad()) out[p.key()] = p.value().sizes().vec();
  return out;
}

// Live bytes of libtorch's CPU allocator, through the hook its allocations report to (the totals'
// type changed from int64_t to size_t in libtorch 2).
#if TORCH_VERSION_MAJOR >= 2
using ReportedTotal = size_t;
#else
using ReportedTotal = int64_t;
#endif
struct LiveBytes : c10::MemoryReportingInfoBase {
  int64_t live = 0, peak = 0;
  void reportMemoryUsage(void*, int64_t size, ReportedTotal, ReportedTotal, c10::Device) override {
    live += size;
    peak = std::max(peak, live);
  }
  bool memoryProfilingEnabled() const override { return true; }
};

std::vector<PackedSequence> rows_of(int64_t batch, int64_t len, int64_t vocab) {
  std::vector<PackedSequence> out(batch);
  for (int64_t r = 0; r < batch; ++r) {
    auto& s = out[r];
    for (int64_t t = 0; t < len; ++t) {
      s.tokens.push_back(static_cast<int32_t>((t * 31 + r * 7) % vocab));
      s.positions.push_back(static_cast<int32_t>(t % (len / 2)));
      s.segments.push_back(t < len / 2 ? 0 : 1);  // two packed samples per row
      s.labels.push_back(static_cast<int32_t>((t * 13 + r) % vocab));
      ++s.supervised;
    }
    s.used = len;
  }
  return out;
}

struct Case {
  const char* name;
  bool bf16, lora, gc;
  double dropout;
  std::vector<std::string> targets;
};

// estimate_memory(in).total for micro-batches 1..8, indexed by the micro-batch ([0] unused).
std::vector<int64_t> estimates_by_micro_batch(MemoryInputs in) {
  std::vector<int64_t> est(9);
  for (int64_t b = 1; b <= 8; ++b) {
    in.micro_batch = b;
    est[b] = estimate_memory(in).total;
  }
  return est;
}

// The largest micro-batch up to `most` whose own estimate fits the budget (0: none). The estimate
// need not grow with the micro-batch on the CPU: a tensor that grows past the block pool's
// threshold leaves the C heap, whose retention is modelled as larger.
int64_t largest_fitting(const std::vector<int64_t>& est, int64_t budget, int64_t most) {
  int64_t best = 0;
  for (int64_t b = 1; b <= most; ++b)
    if (est[b] <= budget) best = b;
  return best;
}

}  // namespace

TEST(MemoryEstimate, TrainableShapesAreThoseApplyLoraMakes) {
  std::vector<std::pair<LlamaConfig, std::optional<LoraOptions>>> cases;
  LoraOptions qv;
  qv.target_modules = {"q_proj", "v_proj"};
  cases.push_back({small_config(), qv});
  LoraOptions all;
  all.target_modules = {"all-linear"};
  all.r = 16;
  all.bias = "all";
  LlamaConfig biased = small_config();
  biased.attention_bias = true;
  cases.push_back({biased, all});
  LoraOptions lo = qv;
  lo.bias = "lora_only";
  lo.target_modules = {"q_proj", "o_proj"};
  cases.push_back({biased, lo});
  LoraOptions ends;
  ends.target_modules = {"embed_tokens", "lm_head", "down_proj"};
  cases.push_back({small_config(false), ends});
  LoraOptions tied_ends = ends;
  tied_ends.modules_to_save.clear();
  cases.push_back({small_config(true), tied_ends});
  LoraOptions save = qv;
  save.modules_to_save = {"embed_tokens", "lm_head"};
  cases.push_back({small_config(false), save});
  cases.push_back({small_config(true), std::nullopt});
  for (const auto& [c, o] : cases) {
    std::map<std::string, std::vector<int64_t>> derived;
    for (const auto& [name, shape] : trainable_shapes(c, o)) derived[name] = shape;
    EXPECT_EQ(derived, built_trainable(c, o)) << (o ? o->target_modules[0] : "full");
  }
}

// The derivation in memory_estimate.cpp against libtorch's allocator: the bytes a forward pass
// keeps for backward within 10%, the step's transient peak within 15%.
TEST(MemoryEstimate, ActivationBytesAreWhatLibtorchKeeps) {
  const int64_t B = 2, T = 96;
  const LlamaConfig c = small_config();
  const std::vector<Case> cases = {
      {"f32 lora q,v", false, true, false, 0.0, {"q_proj", "v_proj"}},
      {"f32 lora all", false, true, false, 0.0, {"all-linear"}},
      {"f32 lora all dropout", false, true, false, 0.1, {"all-linear"}},
      {"bf16 lora all", true, true, false, 0.0, {"all-linear"}},
      {"bf16 lora q,v gc", true, true, true, 0.0, {"q_proj", "v_proj"}},
      {"f32 full", false, false, false, 0.0, {}},
      {"bf16 full", true, false, false, 0.0, {}},
      {"f32 full gc", false, false, true, 0.0, {}},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    LlamaForCausalLM m(c);
    m->init_weights(5, 0.05);
    MemoryInputs in;
    in.model = c;
    in.micro_batch = B;
    in.seq = T;
    in.gradient_checkpointing = k.gc;
    in.dtype_bytes = k.bf16 ? 2 : 4;
    if (k.bf16) m->to(torch::kBFloat16);  // as setup_model: the base in bf16, then float32 adapters
    if (k.lora) {
      LoraOptions o;
      o.r = 8;
      o.target_modules = k.targets;
      o.lora_dropout = k.dropout;
      apply_lora(m, o);
      in.lora = o;
    }
    m->gradient_checkpointing = k.gc;
    m->train();
    const MemoryEstimate e = estimate_memory(in);
    auto seqs = rows_of(B, T, c.vocab_size);
    SequenceBatch batch;
    for (const auto& s : seqs) batch.rows.push_back(&s);
    auto rep = std::make_shared<LiveBytes>();
    int64_t kept = 0, peak = 0;
    {
      c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, rep);
      const int64_t before = rep->live;
      auto loss = batch_loss_sum(m, batch);
      kept = rep->live - before;  // the peak covers the loss's own work in the forward pass too
      loss.backward();
      peak = rep->peak - before;
    }
    EXPECT_NEAR(static_cast<double>(kept), static_cast<double>(e.saved_activations), 0.10 * e.saved_activations)
        << "kept " << format_bytes(kept) << ", estimated " << format_bytes(e.saved_activations);
    // (the optimizer step is not run here: the forward and backward passes' estimate)
    EXPECT_NEAR(static_cast<double>(peak), static_cast<double>(e.backward_transient), 0.15 * e.backward_transient)
        << "peak " << format_bytes(peak) << ", estimated " << format_bytes(e.backward_transient);
    std::cout << k.name << ": kept " << kept << " (estimate " << e.saved_activations << "), step peak " << peak
              << " (estimate " << e.backward_transient << ")\n";
  }
}

TEST(MemoryEstimate, LargestMicroBatchFitsTheBudget) {
  MemoryInputs in;
  in.model = small_config();
  in.seq = 96;
  LoraOptions o;
  in.lora = o;
  const std::vector<int64_t> est = estimates_by_micro_batch(in);
  ASSERT_LT(est[1], est[4]);
  ASSERT_LT(est[4], est[5]);
  for (const int64_t budget : {est[4], est[5] - 1, est[5], est[8]}) {
    EXPECT_EQ(largest_micro_batch(in, 8, budget), largest_fitting(est, budget, 8)) << budget;
    EXPECT_GE(largest_micro_batch(in, 8, budget), 4);
    EXPECT_LE(est[largest_micro_batch(in, 8, budget)], budget);
  }
  EXPECT_EQ(largest_micro_batch(in, 3, est[5]), 3);  // never above the rank's share of the batch
  EXPECT_EQ(largest_micro_batch(in, 8, *std::min_element(est.begin() + 1, est.end()) - 1), 0);
  // A global batch of millions (auto keeps it; the scan is bounded by the rank's share): the scan
  // stops once an estimate passes twice the budget, with the answer a full scan of 8 sizes gives.
  // Before, it estimated every size up to 2^24 (hours).
  EXPECT_EQ(largest_micro_batch(in, int64_t{1} << 24, est[5]), largest_fitting(est, est[5], 8));
}

TEST(MemoryEstimate, ParsesAndFormatsSizes) {
  EXPECT_EQ(parse_bytes("24GiB"), int64_t{24} << 30);
  EXPECT_EQ(parse_bytes("1.5 GB"), 1500000000);
  EXPECT_EQ(parse_bytes("800mib"), int64_t{800} << 20);
  EXPECT_EQ(parse_bytes("123456"), 123456);
  for (const char* bad : {"", "GiB", "12 parsecs", "0", "-3GB", "1e400"}) EXPECT_THROW(parse_bytes(bad), std::invalid_argument) << bad;
  EXPECT_EQ(format_bytes(int64_t{3} << 29), "1.50 GiB");
  EXPECT_EQ(format_bytes(int64_t{5} << 20), "5.0 MiB");
}

namespace {

// A tiny model, chats and a config for plan_memory and `train`.
struct PlanWorkspace {
  ringtune_test::TempDir dir{"ringtune-memplan"};
  PlanWorkspace() {
    ringtune_test::write_tiny_llama(dir.file("base"), 32000, 32, 2, 3,
                                    ringtune_test::fixtures_dir() + "/tokenizers/llama2-sp/tokenizer.model");
    ringtune_test::write_file(dir.file("train.jsonl"), ringtune_test::weather_chats(16));
  }
  std::string config(const std::string& extra) const {
    const std::string yaml = "initial_base_model_ckpt_path: " + dir.file("base") + "\ntrain_path: " + dir.file("train.jsonl") +
                             "\noutput_dir: " + dir.file("out") +
                             "\ncontext_length: 64\ngeneration_config: {prompt_format: llama2}\nglobal_batch_size: 8\n"
                             "max_steps: 2\nlora_config: {r: 4, target_modules: [q_proj, v_proj]}\n" +
                             extra;
    ringtune_test::write_file(dir.file("cfg.yaml"), yaml);
    return dir.file("cfg.yaml");
  }
};

TrainOptions options_of(const std::string& path) { return train_options_from_config(load_config(path, {})); }

}  // namespace

TEST(MemoryEstimate, AutoPicksTheLargestMicroBatchUnderTheBudgetAndRefusesTooSmallOnes) {
  PlanWorkspace ws;
  TrainOptions o = options_of(ws.config("train_batch_size_per_device: auto\n"));
  ASSERT_EQ(o.micro_batch, 0);
  MemoryInputs in = memory_inputs(o, 1);
  const std::vector<int64_t> est = estimates_by_micro_batch(in);  // auto takes the largest that fits
  // plan_memory on these same inputs: memory_inputs(o, ...) would measure the process's resident
  // size again, and it moves between two calls (CI saw est[2] grow past a budget of est[2]).
  const auto plan = [&](int world) {
    MemoryInputs again = in;
    again.world = world;
    std::string log;
    MemoryEstimate e = plan_memory(o, again, 1, &log);
    return std::make_pair(e, log);
  };
  o.memory_budget = est[2];
  const int64_t pick = largest_fitting(est, o.memory_budget, 8);
  ASSERT_GE(pick, 2);
  const auto [e, log] = plan(1);
  EXPECT_EQ(o.micro_batch, pick);
  EXPECT_EQ(e.total, est[pick]);
  EXPECT_LE(e.total, o.memory_budget);
  EXPECT_NE(log.find("train_batch_size_per_device auto: " + std::to_string(pick)), std::string::npos) << log;
  EXPECT_EQ(o.global_batch_at(1), 8);  // the global batch is kept
  o.micro_batch = 0;
  o.memory_budget = est[8] * 4;
  plan(2);
  EXPECT_EQ(o.micro_batch, 4);  // never above the rank's share of the global batch (8 over 2 ranks)
  o.micro_batch = 0;
  o.memory_budget = *std::min_element(est.begin() + 1, est.end()) - 1;
  EXPECT_THROW(plan(1), InputError);
  o.micro_batch = 4;  // configured: a budget below its estimate is refused too
  o.memory_budget = est[4] - 1;
  EXPECT_THROW(plan(1), InputError);
  // The overload that reads the config itself gives the same choice (a budget with room for the
  // baseline to move between the two measurements).
  o.micro_batch = 0;
  o.memory_budget = est[8] + (64 << 20);
  std::string log2;
  plan_memory(o, 1, 1, &log2);
  EXPECT_EQ(o.micro_batch, 8) << log2;
}

TEST(MemoryEstimate, TrainWithAutoMicroBatchRunsAndSaysWhatItPicked) {
  PlanWorkspace ws;
  const std::string cfg = ws.config("train_batch_size_per_device: auto\nmemory_budget: 64GiB\n");
  const auto r = ringtune_test::run_ringtune("train " + cfg);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("train_batch_size_per_device auto: 8 (the largest of 1..8 whose estimate fits the memory_budget"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("memory estimate per rank: "), std::string::npos);
  EXPECT_NE(r.err.find("global batch 8 = 1 rank(s) x 1 micro-batch(es) of <= 8"), std::string::npos) << r.err;
  EXPECT_EQ(ringtune_test::metrics_losses(ws.dir.file("out")).size(), 2u);
  const auto est = ringtune_test::run_ringtune("estimate " + cfg);
  ASSERT_EQ(est.exit_code, 0) << est.err;
  for (const char* row : {"base weights", "trainable parameters", "gradient buffer", "optimizer state", "activations",
                          "logits and loss", "peak", "full, 8-bit Adam, GC", "QLoRA, GC, fused"})
    EXPECT_NE(est.out.find(row), std::string::npos) << row << "\n" << est.out;
}
