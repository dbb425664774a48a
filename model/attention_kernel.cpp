// Block-wise causal attention over packed segments; see attention_kernel.h.
//
// For one (batch row b, query head h) and a block of query rows i0 .. i1 (at most
// kAttentionBlockRows), the keys visited are j0 .. i1, j0 the segment start of row i0 (rows of a
// block have non-decreasing segment starts), and in the [m, n] block row i keeps keys
// starts[i] .. i. With s = 1/sqrt(hd):
//   forward   S = s·Q_blk K_rng^T, masked;  P = softmax_rows(S) (kept);  O_blk = P V_rng
//   backward  D_i = sum_d dO_id O_id;  dV_rng += P^T dO_blk;  dS = P ⊙ (dO_blk V_rng^T - D);
//             dQ_blk = s·dS K_rng;  dK_rng += s·dS^T Q_blk
// Work is split over (b, key/value head) pairs, each running its query heads in turn, so the
// accumulations into dK and dV never race. The products are libtorch's (BLAS) in float32 on
// strided views: nothing is transposed or copied into [B, H, T, hd] order.
#include "model/attention_kernel.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>
#include <vector>

namespace ringtune {

namespace {

constexpr int64_t kBlock = kAttentionBlockRows;

using torch::Tensor;

// Row r of the [m, n] block (query i0 + r, keys from j0) keeps keys starts[i0 + r] .. i0 + r.
void mask_block(float* s, int64_t m, int64_t n, int64_t i0, int64_t j0, const int64_t* starts) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t r = 0; r < m; ++r) {
    float* row = s + r * n;
    const int64_t lo = starts[i0 + r] - j0, hi = i0 + r - j0 + 1;
    std::fill(row, row + lo, ninf);
    std::fill(row + hi, row + n, ninf);
  }
}

// The query blocks of a row of length T: f(i0, m, j0, n) for query rows i0 .. i0 + m and keys
// j0 .. j0 + n, j0 the segment start of row i0 (0 without starts: one segment).
template <typename F>
void for_each_block(int64_t T, const int64_t* starts, F f) {
  for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
    const int64_t i1 = std::min(T, i0 + kBlock), j0 = starts ? starts[i0] : 0;
    f(i0, i1 - i0, j0, i1 - j0);
  }
}

// Where each (b, h, block)'s probabilities live in one float32 buffer: per row b, the blocks'
// areas m·n (the same for every head), heads one after the other.
struct BlockLayout {
  std::vector<int64_t> row_base, row_area, block_off;  // [B], [B], [B * blocks]
  int64_t blocks = 0, total = 0;
  BlockLayout(const int64_t* st, int64_t B, int64_t H, int64_t T) : row_base(B), row_area(B) {
    blocks = (T + kBlock - 1) / kBlock;
    block_off.resize(B * blocks);
    for (int64_t b = 0; b < B; ++b) {
      int64_t area = 0;
      for_each_block(T, st + b * T, [&](int64_t i0, int64_t m, int64_t, int64_t n) {
        block_off[b * blocks + i0 / kBlock] = area;
        area += m * n;
      });
      row_base[b] = total;
      row_area[b] = area;
      total += H * area;
    }
  }
  int64_t offset(int64_t b, int64_t h, int64_t i0) const {
    return row_base[b] + h * row_area[b] + block_off[b * blocks + i0 / kBlock];
  }
};

// A tensor in float32: itself when it is float32, else a float32 copy with its strides. The
// products run in float32 in every case: oneDNN's bf16 products build a primitive per new shape, and the key
// ranges here take many shapes (measured on 64-row blocks: 190 us per product, 20 in float32).
Tensor float32(const Tensor& x) { return x.scalar_type() == torch::kFloat32 ? x : x.to(torch::kFloat32); }

struct SegmentCausalAttention : public torch::autograd::Function<SegmentCausalAttention> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& starts) {
    const int64_t B = q.size(0), H = q.size(1), T = q.size(2), hd = q.size(3), K = k.size(1), rep = H / K;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    const bool f32 = q.scalar_type() == torch::kFloat32;
    // bf16 inputs widened once, whole (one vectorised pass each; per-head strided copies cost
    // ~10x as much), their strides kept, so the per-head slices below are views either way
    const Tensor qd = float32(q.detach()), kd = float32(k.detach()), vd = float32(v.detach());
    auto out32 = torch::empty({B, T, H, hd}, q.options().dtype(torch::kFloat32));
    const int64_t* st = starts.data_ptr<int64_t>();
    const BlockLayout lay(st, B, H, T);
    auto probs = torch::empty({lay.total}, q.options().dtype(torch::kFloat32));
    at::parallel_for(0, B * K, 1, [&](int64_t lo, int64_t hi) {
      at::AutoDispatchBelowADInplaceOrView guard;
      for (int64_t item = lo; item < hi; ++item) {
        const int64_t b = item / K, kh = item % K;
        const int64_t* sb = st + b * T;
        const Tensor kb = kd[b][kh], vb = vd[b][kh];
        for (int64_t h = kh * rep; h < (kh + 1) * rep; ++h) {
          const Tensor qb = qd[b][h], ob = out32[b].select(1, h);
          for_each_block(T, sb, [&](int64_t i0, int64_t m, int64_t j0, int64_t n) {
            Tensor S = probs.narrow(0, lay.offset(b, h, i0), m * n).view({m, n});
            at::addmm_out(S, S, qb.narrow(0, i0, m), kb.narrow(0, j0, n).t(), 0.0, scale);
            mask_block(S.data_ptr<float>(), m, n, i0, j0, sb);
            S.sub_(S.amax(1, true)).exp_();
            S.div_(S.sum(1, true));
            Tensor o = ob.narrow(0, i0, m);
            at::mm_out(o, S, vb.narrow(0, j0, n));
          });
        }
      }
    });
    const Tensor out = f32 ? out32 : out32.to(q.scalar_type());
    ctx->save_for_backward({q, k, v, out, probs, starts});
    return out.transpose(1, 2);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const Tensor q = saved[0].detach(), k = saved[1].detach(), v = saved[2].detach(), out = saved[3].detach(),
                 probs = saved[4], starts = saved[5];
    const int64_t B = q.size(0), H = q.size(1), T = q.size(2), hd = q.size(3), K = k.size(1), rep = H / K;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    const Tensor dout = float32(grad_out[0]);  // [B, H, T, hd]; bf16 widened once, as in forward
    const Tensor q32 = float32(q), k32 = float32(k), v32 = float32(v);
    // D = rowsum(dO ⊙ O) in float32, [B, H, T].
    const Tensor D = (dout * float32(out.transpose(1, 2))).sum(-1);
    // Float32 gradients (keys and values accumulate over query blocks and heads), cast at the end.
    const auto opts = q.options().dtype(torch::kFloat32);
    auto dq = torch::empty({B, T, H, hd}, opts);
    auto dk = torch::zeros({B, T, K, hd}, opts);
    auto dv = torch::zeros({B, T, K, hd}, opts);
    const int64_t* st = starts.data_ptr<int64_t>();
    const BlockLayout lay(st, B, H, T);
    at::parallel_for(0, B * K, 1, [&](int64_t lo, int64_t hi) {
      at::AutoDispatchBelowADInplaceOrView guard;
      Tensor scratch = torch::empty({kBlock * T});
      for (int64_t item = lo; item < hi; ++item) {
        const int64_t b = item / K, kh = item % K;
        const int64_t* sb = st + b * T;
        const Tensor kb = k32[b][kh], vb = v32[b][kh], dkb = dk[b].select(1, kh), dvb = dv[b].select(1, kh);
        for (int64_t h = kh * rep; h < (kh + 1) * rep; ++h) {
          const Tensor qb = q32[b][h], dob = dout[b][h], dqb = dq[b].select(1, h), Db = D[b][h];
          for_each_block(T, sb, [&](int64_t i0, int64_t m, int64_t j0, int64_t n) {
            const Tensor qblk = qb.narrow(0, i0, m), doblk = dob.narrow(0, i0, m);
            const Tensor krng = kb.narrow(0, j0, n), vrng = vb.narrow(0, j0, n);
            Tensor dvr = dvb.narrow(0, j0, n), dkr = dkb.narrow(0, j0, n), dqr = dqb.narrow(0, i0, m);
            const Tensor P = probs.narrow(0, lay.offset(b, h, i0), m * n).view({m, n});
            at::addmm_out(dvr, dvr, P.t(), doblk);  // dV_rng += P^T dO_blk
            // dS = P ⊙ (dO_blk V_rng^T - D)
            Tensor dS = scratch.narrow(0, 0, m * n).view({m, n});
            at::mm_out(dS, doblk, vrng.t());
            dS.sub_(Db.narrow(0, i0, m).unsqueeze(1)).mul_(P);
            at::addmm_out(dqr, dqr, dS, krng, 0.0, scale);
            at::addmm_out(dkr, dkr, dS.t(), qblk, 1.0, scale);
          });
        }
      }
    });
    const auto dtype = q.scalar_type();
    return {dq.to(dtype).transpose(1, 2), dk.to(dtype).transpose(1, 2), dv.to(dtype).transpose(1, 2), Tensor()};
  }
};

}  // namespace

double attention_kernel_saved_per_row(int64_t length) {
  double area = 0;
  for_each_block(length, nullptr, [&](int64_t, int64_t m, int64_t, int64_t n) { area += static_cast<double>(m * n); });
  return length > 0 ? area / static_cast<double>(length) : 0.0;
}

Tensor segment_run_starts(const Tensor& segment_ids, int64_t batch, int64_t length) {
  auto starts = torch::zeros({batch, length}, torch::TensorOptions().dtype(torch::kInt64));
  if (!segment_ids.defined()) return starts;
  const Tensor ids = segment_ids.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t* id = ids.data_ptr<int64_t>();
  int64_t* out = starts.data_ptr<int64_t>();
  std::unordered_set<int64_t> closed;
  for (int64_t b = 0; b < batch; ++b) {
    closed.clear();
    int64_t start = 0;
    for (int64_t i = 0; i < length; ++i) {
      const int64_t x = id[b * length + i];
      if (i > 0 && x != id[b * length + i - 1]) {
        closed.insert(id[b * length + i - 1]);
        if (closed.count(x)) return Tensor();  // the id comes back: not one run
        start = i;
      }
      out[b * length + i] = start;
    }
  }
  return starts;
}

Tensor segment_causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& starts) {
  return SegmentCausalAttention::apply(q, k, v, starts);
}

}  // namespace ringtune
