// Blockwise quantization as bitsandbytes does it, for QLoRA's frozen base weights (NF4, 4 bits)
// and for 8-bit optimizer state (the dynamic 8-bit maps).
//
// A flat array is cut into blocks of `block` elements (the last one may be shorter); each block
// keeps its absolute maximum as float32 and every element the index of the code value nearest to
// element / absmax, the code being a sorted table in [-1, 1]. "Nearest" is bitsandbytes's rule:
// the index counts the midpoints between neighbouring code values that lie strictly below the
// scaled element (a tie goes to the lower value), and the scaled element is element *
// (1 / max(absmax, 1e-38)) clamped to [-1, 1], so an all-zero block quantizes to the code of 0.
// Dequantization is code[index] * absmax in float32.
//
// NF4 (QLoRA): the 16 NormalFloat values, blocks of 64, two indices per byte, the first element
// of a pair in the high nibble. With double quantization ("compress_statistics" in bitsandbytes)
// the float32 absmax values themselves are stored in 8 bits: their mean is subtracted (the
// `offset`), the rest quantized blockwise with the signed dynamic map in blocks of 256, so a
// block's scale is dynamic_signed[absmax_code] * absmax2[block / 256] + offset.
// defines: nf4_code, dynamic_map, quantize_index, quantize_blockwise8, dequantize_blockwise8,
//          Nf4Weight, nf4_quantize, nf4_scales, nf4_dequantize, nf4_dequantize_into,
//          nf4_dequantize_tile_into, nf4_tile_bytes
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace ringtune {

// bitsandbytes's NF4 table (get_4bit_type("nf4")), ascending.
const std::array<float, 16>& nf4_code();
// bitsandbytes's create_dynamic_map(signed, max_exponent_bits=7, total_bits=8): 256 values,
// ascending; signed spans [-0.99297, 1], unsigned [0, 1].
const std::array<float, 256>& dynamic_map(bool is_signed);

// Index of the code value nearest to x (see above) in a sorted code of n values.
uint8_t quantize_index(const float* code, int n, float x);

// Blockwise 8-bit quantization of x[0, n) with a 256-value code: q[n] indices, absmax[ceil(n /
// block)]. And back: out[i] = code[q[i]] * absmax[i / block].
void quantize_blockwise8(const float* x, int64_t n, int64_t block, const float* code, uint8_t* q, float* absmax);
void dequantize_blockwise8(const uint8_t* q, const float* absmax, int64_t n, int64_t block, const float* code,
                           float* out);

// A weight in NF4 with double-quantized block scales, as bitsandbytes's Linear4bit holds it
// (quant_type nf4, blocksize 64, compress_statistics true). CPU tensors or on the weight's
// device; `shape` is the original weight's.
struct Nf4Weight {
  at::Tensor packed;     // uint8 [(numel + 1) / 2]
  at::Tensor absmax_q;   // uint8 [blocks]: the double-quantized block scales
  at::Tensor absmax2;    // float32 [ceil(blocks / 256)]: the scales of absmax_q
  float offset = 0.0f;   // the mean of the block absmax values
  std::vector<int64_t> shape;
  int64_t block = 64;
  int64_t numel() const;
  int64_t bytes() const;  // packed + statistics
};

// On the CPU a product with an NF4 weight dequantizes at most this many bytes of it at a time
// (whole rows or columns; model/llama.cpp), into one scratch buffer per thread.
constexpr int64_t nf4_tile_bytes = int64_t{4} << 20;

// Quantizes a floating tensor of any dtype (read as float32). double_quant false keeps float32
// absmax values in absmax2 (one per block) and leaves absmax_q undefined.
Nf4Weight nf4_quantize(const at::Tensor& w, bool double_quant = true, int64_t block = 64);
// The float32 scale of every block (absmax, after undoing double quantization).
at::Tensor nf4_scales(const Nf4Weight& q);
// The weight in `dtype` on q.packed's device, shape q.shape: code * scale computed in float32,
// then rounded to dtype.
at::Tensor nf4_dequantize(const Nf4Weight& q, at::ScalarType dtype);
// The same into `out` (CPU, contiguous, floating, at least q.numel() elements; its first
// q.numel() are written); returns them viewed as q.shape. For a reused scratch buffer.
at::Tensor nf4_dequantize_into(const Nf4Weight& q, const at::Tensor& out);
// Rows [r0, r0 + rows) and columns [c0, c0 + cols) of a 2-D q the same way, as a contiguous
// [rows, cols] tensor in `out`; `scales` is nf4_scales(q). For a product a tile at a time.
at::Tensor nf4_dequantize_tile_into(const Nf4Weight& q, const at::Tensor& scales, int64_t r0, int64_t rows,
                                    int64_t c0, int64_t cols, const at::Tensor& out);

}  // namespace ringtune
