// Gradient reduction and ZeRO-1 exchange; see data_parallel.h.
#include "distributed/data_parallel.h"

#include <torch/torch.h>

#include <algorithm>

#include <cmath>

#include "distributed/comm.h"
#include "distributed/shard_map.h"

namespace ringtune {

DataParallel::DataParallel(Communicator& comm, std::vector<std::pair<std::string, at::Tensor>> trainable,
                           int zero_stage, int64_t align)
    : comm_(comm), trainable_(std::move(trainable)), zero_stage_(zero_stage) {
  world_map_ = std::make_unique<ShardMap>(named_numels(trainable_), comm_.size(), align);
  opt_map_ = std::make_unique<ShardMap>(named_numels(trainable_), zero_stage_ == 1 ? comm_.size() : 1, align);
}

DataParallel::~DataParallel() = default;

int DataParallel::optimizer_rank() const { return zero_stage_ == 1 ? comm_.rank() : 0; }

void DataParallel::accumulate_gradients() {
  torch::NoGradGuard no_grad;
  if (!flat_) {
    const auto device = trainable_.empty() ? torch::Device(torch::kCPU) : trainable_[0].second.device();
    flat_ = std::make_unique<at::Tensor>(
        torch::empty({world_map_->total()}, torch::TensorOptions().dtype(torch::kFloat32).device(device)));
    accumulated_.assign(trainable_.size(), false);
  }
  for (size_t i = 0; i < trainable_.size(); ++i) {
    auto& p = trainable_[i].second;
    const auto& g = p.grad();
    if (!g.defined()) continue;
    const auto& t = world_map_->tensors()[i];
    auto dst = flat_->narrow(0, t.flat_offset, t.numel);
    if (accumulated_[i]) {
      dst.add_(g.reshape({-1}));
    } else {
      dst.copy_(g.reshape({-1}));
      accumulated_[i] = true;
    }
    p.mutable_grad() = at::Tensor();
  }
}

at::Tensor DataParallel::reduce_gradients() {
  accumulate_gradients();
  torch::NoGradGuard no_grad;
  at::Tensor flat = *flat_;
  for (size_t i = 0; i < trainable_.size(); ++i) {
    if (!accumulated_[i]) {
      const auto& t = world_map_->tensors()[i];
      flat.narrow(0, t.flat_offset, t.numel).zero_();
    }
    accumulated_[i] = false;
  }
  if (comm_.size() == 1) return flat;
  if (zero_stage_ == 0) {
    for (int64_t off = 0; off < flat.numel(); off += kBucketElements) {
      auto bucket = flat.narrow(0, off, std::min(kBucketElements, flat.numel() - off));
      comm_.all_reduce(bucket);
    }
    return flat;
  }
  auto out = torch::empty({world_map_->count(comm_.rank())}, flat.options());
  comm_.reduce_scatter(flat, out, world_map_->counts());
  return out;
}

double DataParallel::global_norm(const at::Tensor& range_grad) {
  // The squares summed in float64, a slice at a time: a float64 copy of the whole range would be
  // twice the gradient's size (2 GiB more for 134M values, measured at the optimizer step).
  constexpr int64_t kSlice = int64_t{1} << 22;
  auto sq = torch::zeros({}, range_grad.options().dtype(torch::kFloat64));
  for (int64_t off = 0; off < range_grad.numel(); off += kSlice)
    sq += range_grad.narrow(0, off, std::min(kSlice, range_grad.numel() - off)).to(torch::kFloat64).pow(2).sum();
  sq = sq.reshape({1}).cpu();
  if (zero_stage_ == 1 && comm_.size() > 1) {
    // Summed on the CPU in float64 whatever the backend's device.
    sq = torch::tensor({sum({sq.item<double>()})[0]}, torch::kFloat64);
  }
  return std::sqrt(sq.item<double>());
}

at::Tensor DataParallel::gather(const at::Tensor& range) { return gather(range, world_map_->counts()); }

at::Tensor DataParallel::gather(const at::Tensor& local, const std::vector<int64_t>& counts) {
  if (zero_stage_ == 0 || comm_.size() == 1) return local;
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  auto full = torch::empty({total}, local.options());
  comm_.all_gather(local, full, counts);
  return full;
}

std::vector<double> DataParallel::sum(const std::vector<double>& values) {
  if (comm_.size() == 1) return values;
  auto t = torch::tensor(values, torch::kFloat64);
  if (comm_.backend() == "nccl") t = t.to(trainable_.at(0).second.device());
  comm_.all_reduce(t);
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

}  // namespace ringtune
