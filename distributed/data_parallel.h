// Data-parallel gradient and parameter exchange for one optimizer step, over a Communicator:
//   zero_stage 0: the flat gradient is all-reduced (in buckets of at most kBucketElements); every
//                 rank owns the whole AdamW state and updates every parameter;
//   zero_stage 1: the flat gradient is reduce-scattered by the ShardMap; each rank updates its
//                 range (AdamW state for that range only) and the updated values are all-gathered.
// The flat buffer holds the trainable tensors back to back in the order given, as float32: the
// gradients of the micro-batches accumulate there (float32 whatever the parameters' dtype).
// defines: DataParallel
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace at {
class Tensor;
}

namespace ringtune {

class Communicator;
class ShardMap;

class DataParallel {
 public:
  static constexpr int64_t kBucketElements = int64_t{1} << 25;  // 128 MiB of float32

  // align: ShardMap's block alignment of the ranks' ranges (256 for 8-bit optimizer state).
  DataParallel(Communicator& comm, std::vector<std::pair<std::string, at::Tensor>> trainable, int zero_stage,
               int64_t align = 1);
  ~DataParallel();

  // The map the optimizer of this rank uses: the whole buffer on one owner for stage 0 (every
  // rank is "rank 0" of a one-way map), the world-wide split for stage 1.
  const ShardMap& optimizer_map() const { return *opt_map_; }
  int optimizer_rank() const;
  const ShardMap& world_map() const { return *world_map_; }
  int zero_stage() const { return zero_stage_; }

  // Adds every trainable .grad() into the float32 flat gradient and clears it; call after each
  // micro-batch's backward. The first micro-batch of a step copies (so a single micro-batch, or
  // float32 parameters, give exactly what autograd's own accumulation gives).
  void accumulate_gradients();
  // Accumulates what is left in .grad(), reduces the flat gradient (sum over ranks; zero where no
  // micro-batch gave a gradient) and starts the next step's accumulation. Returns the reduced
  // gradient of this rank's optimizer range.
  at::Tensor reduce_gradients();
  // sqrt of the sum over the whole flat gradient of g^2, given this rank's reduced range.
  double global_norm(const at::Tensor& range_grad);
  // A whole flat buffer from every rank's optimizer range (stage 1: all-gather; stage 0: itself).
  at::Tensor gather(const at::Tensor& range);
  // The same for a buffer whose length on rank r is counts[r] (stage 0: itself).
  at::Tensor gather(const at::Tensor& local, const std::vector<int64_t>& counts);

  // Collective of a few doubles (sum over ranks), for step statistics.
  std::vector<double> sum(const std::vector<double>& values);

 private:
  Communicator& comm_;
  std::vector<std::pair<std::string, at::Tensor>> trainable_;
  int zero_stage_;
  std::unique_ptr<ShardMap> world_map_, opt_map_;
  std::unique_ptr<at::Tensor> flat_;  // the accumulated gradient (float32, whole map)
  std::vector<bool> accumulated_;     // per tensor: a gradient is in flat_ this step
};

}  // namespace ringtune
