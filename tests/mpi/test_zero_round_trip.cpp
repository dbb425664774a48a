// ZeRO stage 1 in miniature: a flat buffer of named tensors, gradients reduce-scattered by the
// ShardMap counts, each rank updating its shard (per-tensor learning rates through pieces(), a
// momentum state kept per shard), parameters all-gathered; after each step the result must equal
// the replicated computation exactly (float64 with dyadic values).
#include "distributed/comm.h"
#include "distributed/shard_map.h"
#include "mpi_test_util.h"

namespace ringtune::mpitest {
namespace {

const std::vector<std::pair<std::string, int64_t>> kTensors = {
    {"embed", 7}, {"bias", 1}, {"empty", 0}, {"w1", 13}, {"w2", 5}, {"norm", 3}};

double lr_of(const std::string& name) { return (name == "bias" || name == "norm") ? 0.5 : 0.125; }

// Rank q's gradient at step s: depends on the rank, the element and the step.
at::Tensor gradient(int64_t total, int q, int s) {
  at::Tensor g = at::empty({total}, at::kDouble);
  for (int64_t i = 0; i < total; ++i) g[i] = (q + 1) + 0.5 * (i % 4) + 0.25 * s;
  return g;
}

void run_round_trip(bool views) {
  auto comm = make_communicator("mpi", false);
  const int w = world(), r = me();
  const ShardMap map(kTensors, w);
  const int64_t total = map.total(), begin = map.begin(r), count = map.count(r);

  // Replicated reference: every rank computes everything.
  at::Tensor lr_full = at::empty({total}, at::kDouble);
  for (const ShardPiece& t : map.tensors())
    lr_full.narrow(0, t.flat_offset, t.numel).fill_(lr_of(t.name));
  at::Tensor p_ref = at::arange(total, at::kDouble) * 0.25;
  at::Tensor m_ref = at::zeros({total}, at::kDouble);

  at::Tensor params = p_ref.clone();
  at::Tensor m_shard = at::zeros({count}, at::kDouble);
  for (int step = 0; step < 3; ++step) {
    at::Tensor g_sum = at::zeros({total}, at::kDouble);
    for (int q = 0; q < w; ++q) g_sum += gradient(total, q, step);
    m_ref = m_ref * 0.5 + g_sum;
    p_ref = p_ref - lr_full * m_ref;

    // Sharded.
    at::Tensor grads = gradient(total, r, step);
    at::Tensor g_shard = views ? grads.narrow(0, begin, count) : at::empty({count}, at::kDouble);
    comm->reduce_scatter(grads, g_shard, map.counts());
    m_shard = m_shard * 0.5 + g_shard;
    at::Tensor p_shard =
        views ? params.narrow(0, begin, count) : params.narrow(0, begin, count).clone();
    for (const ShardPiece& piece : map.pieces(r)) {
      const int64_t local = piece.flat_offset - begin;
      p_shard.narrow(0, local, piece.numel)
          .sub_(m_shard.narrow(0, local, piece.numel) * lr_of(piece.name));
    }
    comm->all_gather(p_shard, params, map.counts());
    expect_equal(params, p_ref, "ZeRO params after step " + std::to_string(step));
    // Per tensor too, by name.
    for (const ShardPiece& t : map.tensors())
      expect_equal(params.narrow(0, t.flat_offset, t.numel),
                   p_ref.narrow(0, t.flat_offset, t.numel),
                   "tensor " + t.name + " after step " + std::to_string(step));
  }
}

TEST(ZeroRoundTrip, SeparateShardBuffers) { run_round_trip(false); }
TEST(ZeroRoundTrip, ShardsAreViewsOfTheFlatBuffers) { run_round_trip(true); }

}  // namespace
}  // namespace ringtune::mpitest
