// HDF5 checkpoints; see checkpoint.h.
#include "src/io/checkpoint.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "distributed/progress.h"
#include "src/error.h"
#include "src/io/atomic_file.h"
#include "src/io/h5.h"
#include "src/test_hooks.h"

namespace fs = std::filesystem;

namespace ringtune {

namespace {

constexpr int64_t kFormatVersion = 1;
constexpr const char* kKind = "ringtune-checkpoint";

fs::path ckpt_dir(const std::string& out) { return fs::path(out) / "checkpoints"; }

int64_t step_of(const fs::path& p) {
  const std::string stem = p.stem().string();  // step-00000012
  if (stem.rfind("step-", 0) != 0) return -1;
  try {
    return std::stoll(stem.substr(5));
  } catch (...) {
    return -1;
  }
}

}  // namespace

std::vector<std::string> list_checkpoints(const std::string& output_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_dir(output_dir), ec)) {
    if (e.path().extension() != ".h5") continue;
    const int64_t s = step_of(e.path());
    if (s >= 0) found.emplace_back(s, e.path().string());
  }
  std::sort(found.begin(), found.end(), std::greater<>());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

std::string checkpoint_path(const std::string& output_dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08lld.h5", static_cast<long long>(step));
  return (ckpt_dir(output_dir) / name).string();
}

std::string save_checkpoint(const std::string& output_dir, const CheckpointState& st) {
  fs::create_directories(ckpt_dir(output_dir));
  const fs::path path = checkpoint_path(output_dir, st.step);
  const std::string name = path.filename().string();
  {
    H5File f = H5File::create(path.string());
    f.set_attr("kind", std::string(kKind));
    f.set_attr("format_version", kFormatVersion);
    f.set_attr("step", st.step);
    f.set_attr("epoch", st.epoch);
    f.set_attr("total_steps", st.total_steps);
    f.set_attr("adam_step", st.adam_step);
    f.set_attr("config", st.config_yaml);
    f.set_attr("base_hash", st.base_hash);
    f.set_attr("tokenizer_hash", st.tokenizer_hash);
    f.set_attr("data_hash", st.data_hash);
    f.set_attr("valid_loss", st.valid_loss);
    f.set_attr("global_batch", st.global_batch);
    auto put = [&](const std::string& group, const std::vector<std::pair<std::string, at::Tensor>>& ts) {
      for (const auto& [n, t] : ts) {
        if (t.scalar_type() == torch::kUInt8) {  // 8-bit optimizer codes ("<name>.exp_avg.q8"), flat
          auto c = t.detach().to(torch::kCPU).contiguous();
          f.write(group + "/" + n, std::vector<uint8_t>(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel()));
          note_progress();
          continue;
        }
        auto c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
        f.write_f32(group + "/" + n, c.data_ptr<float>(), c.sizes().vec());
        test_hooks::checkpoint_tensor_written();
        note_progress();  // the other ranks wait in the barrier after the checkpoint
      }
    };
    put("trainable", st.trainable);
    put("optimizer", st.optimizer);
    f.write("rng/torch_cpu", st.rng);
    test_hooks::checkpoint_written(st.step);
    f.commit();
  }
  atomic_write((ckpt_dir(output_dir) / "latest").string(), std::string(name) + "\n");
  return path.string();
}

CheckpointState load_checkpoint(const std::string& path) {
  H5File f = H5File::open(path);
  if (!f.has_attr("kind") || f.attr_string("kind") != kKind)
    throw InputError(path + ": not a ringtune checkpoint");
  if (f.attr_int("format_version") != kFormatVersion)
    throw InputError(path + ": checkpoint format_version " + std::to_string(f.attr_int("format_version")) +
                     " is not supported (expected " + std::to_string(kFormatVersion) + ")");
  CheckpointState st;
  st.step = f.attr_int("step");
  st.epoch = f.attr_int("epoch");
  st.total_steps = f.attr_int("total_steps");
  st.adam_step = f.attr_int("adam_step");
  st.config_yaml = f.attr_string("config");
  st.base_hash = f.attr_string("base_hash");
  st.tokenizer_hash = f.attr_string("tokenizer_hash");
  st.data_hash = f.attr_string("data_hash");
  if (f.has_attr("valid_loss")) st.valid_loss = f.attr_double("valid_loss");
  if (f.has_attr("global_batch")) st.global_batch = f.attr_int("global_batch");
  auto get = [&](const std::string& group, std::vector<std::pair<std::string, at::Tensor>>& out) {
    for (const auto& n : f.list(group)) {
      if (n.size() > 3 && n.compare(n.size() - 3, 3, ".q8") == 0) {
        auto codes = f.read<uint8_t>(group + "/" + n);
        out.emplace_back(n, torch::from_blob(codes.data(), {static_cast<int64_t>(codes.size())}, torch::kUInt8).clone());
        continue;
      }
      std::vector<int64_t> shape;
      auto v = f.read_f32(group + "/" + n, shape);
      out.emplace_back(n, torch::from_blob(v.data(), shape, torch::kFloat32).clone());
    }
  };
  get("trainable", st.trainable);
  get("optimizer", st.optimizer);
  st.rng = f.read<uint8_t>("rng/torch_cpu");
  return st;
}

std::string find_resume_checkpoint(const std::string& output_dir, CheckpointState& state) {
  std::vector<std::string> candidates;
  const fs::path latest = ckpt_dir(output_dir) / "latest";
  if (fs::exists(latest)) {
    std::ifstream in(latest);
    std::string name;
    std::getline(in, name);
    if (!name.empty()) candidates.push_back((ckpt_dir(output_dir) / name).string());
  }
  for (const auto& c : list_checkpoints(output_dir))
    if (std::find(candidates.begin(), candidates.end(), c) == candidates.end()) candidates.push_back(c);
  std::string unusable;
  for (const auto& c : candidates) {
    if (!fs::exists(c)) {
      spdlog::warn("checkpoint {} named by {} does not exist; trying older ones", c, latest.string());
      continue;
    }
    try {
      state = load_checkpoint(c);
      return c;
    } catch (const InputError& e) {
      spdlog::warn("checkpoint {} cannot be used ({}); trying the previous one", c, e.what());
      unusable += (unusable.empty() ? "" : ", ") + fs::path(c).filename().string();
    }
  }
  // Checkpoints that exist but none loads: starting over silently would throw their steps away.
  if (!unusable.empty())
    throw InputError(ckpt_dir(output_dir).string() + ": resume: auto found checkpoints but none loads (" + unusable +
                     "); fix or remove them, or set resume: none to start over");
  return "";
}

std::vector<std::string> remove_checkpoints_after(const std::string& output_dir, int64_t after,
                                                  const std::string& kept) {
  std::vector<std::string> removed;
  for (const auto& c : list_checkpoints(output_dir)) {
    if (step_of(c) <= after || fs::path(c) == fs::path(kept)) continue;
    fs::remove(c);
    removed.push_back(fs::path(c).filename().string());
  }
  return removed;
}

void prune_checkpoints(const std::string& output_dir, int64_t keep) {
  if (keep <= 0) return;
  const auto all = list_checkpoints(output_dir);  // newest first
  if (all.size() <= static_cast<size_t>(keep)) return;
  std::vector<double> loss(all.size(), std::nan(""));
  std::vector<bool> readable(all.size(), true);
  bool any_loss = false;
  for (size_t i = 0; i < all.size(); ++i) {
    try {
      H5File f = H5File::open(all[i]);
      if (f.has_attr("valid_loss")) loss[i] = f.attr_double("valid_loss");
    } catch (const std::exception&) {
      readable[i] = false;
    }
    any_loss = any_loss || std::isfinite(loss[i]);
  }
  std::vector<size_t> order(all.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (any_loss)  // lowest loss first; ties and checkpoints without one: newest first
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const bool fa = std::isfinite(loss[a]), fb = std::isfinite(loss[b]);
      if (fa != fb) return fa;
      return fa && loss[a] < loss[b];
    });
  std::vector<bool> kept(all.size(), false);
  kept[0] = true;  // the newest: where resume continues
  for (size_t i = 0; i < static_cast<size_t>(keep); ++i) kept[order[i]] = true;
  for (size_t i = 0; i < all.size(); ++i)
    if (!kept[i] && readable[i]) fs::remove(all[i]);
}

}  // namespace ringtune
