// Block-wise causal attention over packed segments; see attention_kernel.h.
//
// For one (batch row b, query head h) and a block of query rows i0 .. i1 (at most
// kAttentionBlockRows), the keys visited are j0 .. i1, j0 the segment start of row i0 (rows of a
// block have non-decreasing segment starts), and in the [m, n] block row i keeps keys
// starts[i] .. i. With s = 1/sqrt(hd):
//   forward   S = s·Q_blk K_rng^T, masked;  P = softmax_rows(S) (kept);  O_blk = P V_rng
//   backward  D_i = sum_d dO_id O_id (= sum_j P_ij dP_ij);  dV_rng += P^T dO_blk;
//             dS = P ⊙ (dO_blk V_rng^T - D);  dQ_blk = s·dS K_rng;  dK_rng += s·dS^T Q_blk
// Work is split over (b, key/value head) pairs, each running its query heads in turn, so the
// accumulations into dK and dV never race. Products read strided views: nothing is transposed or
// copied into [B, H, T, hd] order. Float32 inputs: libtorch's (BLAS) float32 products. Bfloat16
// inputs (see Bf16Gemm): oneDNN's bf16 x bf16 -> float32 GEMM where the process has it, reading q,
// k, v and dO in place; softmax in float32, P rounded to bf16 for its products (as torch.autocast
// does) and kept in bf16 (half the memory), the P the output was made from; dS in float32 with D
// taken per block, its products as two bf16 products (attention_split_ds). Where the GEMM is
// missing, or with RINGTUNE_ATTENTION_BF16_PRODUCTS=0: widened to float32 once, then the float32
// products.
#include "model/attention_kernel.h"

#include "model/attention_split.h"  // defines: attention_split_ds

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
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

// A tensor in float32: itself when it is float32, else a float32 copy with its strides.
Tensor float32(const Tensor& x) { return x.scalar_type() == torch::kFloat32 ? x : x.to(torch::kFloat32); }

// oneDNN's row-major C = alpha op(A) op(B) + beta C with bf16 A, B and float32 C (dnnl.h's
// dnnl_gemm_bf16bf16f32; dnnl_dim_t is int64_t, bfloat16 passed as its 16 bits, 0 is success).
// libtorch's bf16 matmul goes through oneDNN's primitives, which are built per shape (measured on
// 64-row blocks: 190 us per product against 20 in float32), and the key ranges here take many
// shapes; this GEMM entry point has no primitive. It is looked up at run time among the libraries
// already loaded (Debian's libtorch links libdnnl.so.2; builds that hide oneDNN's symbols, as the
// pip wheels do, fall back to float32), and checked once on a small product, because oneDNN
// answers "unimplemented" on CPUs without AVX-512.
// On unless RINGTUNE_ATTENTION_BF16_PRODUCTS=0. Over 200 steps of the medium shape on five seeds
// the bf16 loss with them stays as close to float32's as with the float32 products, within the
// noise of two bf16 runs (README, "bf16 attention products on by default"), and the medium bf16
// step was 1.5-21% faster in interleaved rounds.
using Bf16Gemm = int (*)(char, char, int64_t, int64_t, int64_t, float, const uint16_t*, int64_t, const uint16_t*,
                         int64_t, float, float*, int64_t);
std::atomic<bool> g_allow_bf16{[] {
  const char* v = std::getenv("RINGTUNE_ATTENTION_BF16_PRODUCTS");
  return !(v && std::string(v) == "0");
}()};

Bf16Gemm find_bf16_gemm() {
  static const Bf16Gemm gemm = [] {
    auto f = reinterpret_cast<Bf16Gemm>(dlsym(RTLD_DEFAULT, "dnnl_gemm_bf16bf16f32"));
    if (!f) return Bf16Gemm{};
    // [2, 3] x [3, 2]^T with entries exact in bf16 (0x3F80 = 1, 0x4000 = 2, 0x4040 = 3)
    const uint16_t a[6] = {0x3F80, 0x4000, 0x4040, 0x4000, 0x3F80, 0x3F80};
    const uint16_t b[6] = {0x3F80, 0x3F80, 0x3F80, 0x4000, 0x4000, 0x4040};
    float c[4] = {0, 0, 0, 0};
    if (f('N', 'T', 2, 2, 3, 1.0f, a, 3, b, 3, 0.0f, c, 2) != 0) return Bf16Gemm{};
    const float want[4] = {6, 15, 4, 9};
    return std::memcmp(c, want, sizeof c) == 0 ? f : Bf16Gemm{};
  }();
  return g_allow_bf16.load(std::memory_order_relaxed) ? gemm : Bf16Gemm{};
}

// A [rows, hd] bf16 matrix from row r0 of a 2-D view whose rows are contiguous.
struct Bf16Rows {
  const uint16_t* p;
  int64_t ld;
};
Bf16Rows bf16_rows(const Tensor& x, int64_t r0) {
  return {reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>()) + r0 * x.stride(0), x.stride(0)};
}
uint16_t* bf16_data(const Tensor& x) { return reinterpret_cast<uint16_t*>(x.data_ptr<at::BFloat16>()); }

// op(A) is m x k, op(B) is k x n; 'T' reads the stored matrix transposed.
void gemm(Bf16Gemm f, char ta, char tb, int64_t m, int64_t n, int64_t k, float alpha, Bf16Rows a, Bf16Rows b,
          float beta, float* c, int64_t ldc) {
  const int rc = f(ta, tb, m, n, k, alpha, a.p, a.ld, b.p, b.ld, beta, c, ldc);
  if (rc != 0) throw std::runtime_error("attention: oneDNN bf16 GEMM failed with status " + std::to_string(rc));
}

// x itself when its last dimension is contiguous, else a copy that is.
Tensor rows_contiguous(const Tensor& x) { return x.stride(-1) == 1 ? x : x.contiguous(); }

// Row r of a 2-D float32 view.
float* row_ptr(const Tensor& x, int64_t r) { return x.data_ptr<float>() + r * x.stride(0); }

struct SegmentCausalAttention : public torch::autograd::Function<SegmentCausalAttention> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& starts) {
    const int64_t B = q.size(0), H = q.size(1), T = q.size(2), hd = q.size(3), K = k.size(1), rep = H / K;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    const bool f32 = q.scalar_type() == torch::kFloat32;
    const Bf16Gemm bf = q.scalar_type() == torch::kBFloat16 ? find_bf16_gemm() : nullptr;
    // With bf, bf16 read in place; else bf16 inputs widened once, whole (one vectorised pass
    // each; per-head strided copies cost ~10x as much), their strides kept, so the per-head
    // slices below are views either way.
    const auto operand = [&](const Tensor& x) { return bf ? rows_contiguous(x.detach()) : float32(x.detach()); };
    const Tensor qd = operand(q), kd = operand(k), vd = operand(v);
    auto out32 = torch::empty({B, T, H, hd}, q.options().dtype(torch::kFloat32));
    const int64_t* st = starts.data_ptr<int64_t>();
    const BlockLayout lay(st, B, H, T);
    // P of the visited blocks, kept for the backward pass: float32, or with bf16 products P
    // rounded to bf16 once, what the PV product reads and what the backward pass differentiates.
    auto probs = torch::empty({lay.total}, q.options().dtype(bf ? torch::kBFloat16 : torch::kFloat32));
    at::parallel_for(0, B * K, 1, [&](int64_t lo, int64_t hi) {
      at::AutoDispatchBelowADInplaceOrView guard;
      Tensor s32 = bf ? torch::empty({kBlock * T}, q.options().dtype(torch::kFloat32)) : Tensor();  // scores
      for (int64_t item = lo; item < hi; ++item) {
        const int64_t b = item / K, kh = item % K;
        const int64_t* sb = st + b * T;
        const Tensor kb = kd[b][kh], vb = vd[b][kh];
        for (int64_t h = kh * rep; h < (kh + 1) * rep; ++h) {
          const Tensor qb = qd[b][h], ob = out32[b].select(1, h);
          for_each_block(T, sb, [&](int64_t i0, int64_t m, int64_t j0, int64_t n) {
            Tensor P = probs.narrow(0, lay.offset(b, h, i0), m * n).view({m, n});
            // scores in float32: a scratch block with bf16 products, else P itself
            Tensor S = bf ? s32.narrow(0, 0, m * n).view({m, n}) : P;
            if (bf)
              gemm(bf, 'N', 'T', m, n, hd, static_cast<float>(scale), bf16_rows(qb, i0), bf16_rows(kb, j0), 0.0f,
                   S.data_ptr<float>(), n);
            else
              at::addmm_out(S, S, qb.narrow(0, i0, m), kb.narrow(0, j0, n).t(), 0.0, scale);
            mask_block(S.data_ptr<float>(), m, n, i0, j0, sb);
            S.sub_(S.amax(1, true)).exp_();
            at::div_out(P, S, S.sum(1, true));  // normalised in float32 (stored in bf16 with bf16 products)
            if (bf) {
              gemm(bf, 'N', 'N', m, hd, n, 1.0f, {bf16_data(P), n}, bf16_rows(vb, j0), 0.0f, row_ptr(ob, i0),
                   ob.stride(0));
            } else {
              Tensor o = ob.narrow(0, i0, m);
              at::mm_out(o, P, vb.narrow(0, j0, n));
            }
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
    const Bf16Gemm bf = q.scalar_type() == torch::kBFloat16 ? find_bf16_gemm() : nullptr;
    const auto operand = [&](const Tensor& x) { return bf ? rows_contiguous(x) : float32(x); };
    const Tensor dout = operand(grad_out[0]);  // [B, H, T, hd]
    const Tensor qd = operand(q), kd = operand(k), vd = operand(v);
    // D = rowsum(dO ⊙ O) in float32, [B, H, T] (with bf16 products, per block: see below).
    const Tensor D = bf ? Tensor() : (float32(dout) * float32(out.transpose(1, 2))).sum(-1);
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
      Tensor ds16 = bf ? torch::empty({2 * kBlock * T}, q.options()) : Tensor();  // dS as bf16 hi, lo
      for (int64_t item = lo; item < hi; ++item) {
        const int64_t b = item / K, kh = item % K;
        const int64_t* sb = st + b * T;
        const Tensor kb = kd[b][kh], vb = vd[b][kh], dkb = dk[b].select(1, kh), dvb = dv[b].select(1, kh);
        for (int64_t h = kh * rep; h < (kh + 1) * rep; ++h) {
          const Tensor qb = qd[b][h], dob = dout[b][h], dqb = dq[b].select(1, h);
          const Tensor Db = D.defined() ? D[b][h] : Tensor();
          for_each_block(T, sb, [&](int64_t i0, int64_t m, int64_t j0, int64_t n) {
            const Tensor P = probs.narrow(0, lay.offset(b, h, i0), m * n).view({m, n});
            Tensor dS = scratch.narrow(0, 0, m * n).view({m, n});
            if (bf) {  // P in bf16
              // dV_rng += P^T dO_blk;  dP = dO_blk V_rng^T
              gemm(bf, 'T', 'N', n, hd, m, 1.0f, {bf16_data(P), n}, bf16_rows(dob, i0), 1.0f,
                   row_ptr(dvb, j0), dvb.stride(0));
              gemm(bf, 'N', 'T', m, n, hd, 1.0f, bf16_rows(dob, i0), bf16_rows(vb, j0), 0.0f, dS.data_ptr<float>(), n);
              // dS = P ⊙ (dP - D) in float32, D taken per block: the block holds every key its rows
              // attend to, so D is the row sum of P ⊙ dP from the P the output was made from, and
              // dS's rows sum to zero, which dQ = s·dS·K relies on when the keys share a large
              // common part. Its two products, dQ_blk = s dS K_rng and dK_rng += s dS^T Q_blk, each
              // as hi + lo bf16 products (attention_split_ds). Errors against float64, relative to
              // the float32 products': 1.09-1.20x with centred keys (dS rounded once, as
              // torch.autocast does: 1.39-1.49x), dQ 0.51-0.58x with keys offset by 8 (D from the
              // output rounded to bf16: 1.13-1.22x; Bf16ProductsKeepGradientsOfOffsetKeys).
              uint16_t* const ds_hi = bf16_data(ds16);
              uint16_t* const ds_lo = ds_hi + m * n;
              attention_split_ds(dS.data_ptr<float>(), bf16_data(P), m, n, ds_hi, ds_lo);
              const auto s = static_cast<float>(scale);
              for (const uint16_t* part : {ds_hi, ds_lo}) {
                gemm(bf, 'N', 'N', m, hd, n, s, {part, n}, bf16_rows(kb, j0), part == ds_hi ? 0.0f : 1.0f,
                     row_ptr(dqb, i0), dqb.stride(0));
                gemm(bf, 'T', 'N', n, hd, m, s, {part, n}, bf16_rows(qb, i0), 1.0f, row_ptr(dkb, j0), dkb.stride(0));
              }
              return;
            }
            const Tensor qblk = qb.narrow(0, i0, m), doblk = dob.narrow(0, i0, m);
            const Tensor krng = kb.narrow(0, j0, n), vrng = vb.narrow(0, j0, n);
            Tensor dvr = dvb.narrow(0, j0, n), dkr = dkb.narrow(0, j0, n), dqr = dqb.narrow(0, i0, m);
            at::addmm_out(dvr, dvr, P.t(), doblk);  // dV_rng += P^T dO_blk
            // dS = P ⊙ (dO_blk V_rng^T - D)
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

bool attention_kernel_bf16_products() { return find_bf16_gemm() != nullptr; }

void allow_attention_kernel_bf16_products(bool allow) { g_allow_bf16.store(allow); }

Tensor segment_causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& starts) {
  return SegmentCausalAttention::apply(q, k, v, starts);
}

}  // namespace ringtune
