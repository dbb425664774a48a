// See finite_check.h.
#include "src/io/finite_check.h"

#include <torch/torch.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "distributed/progress.h"
#include "src/error.h"

namespace ringtune {

void require_finite(const at::Tensor& t, const std::string& file, const std::string& name, double* seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool finite = t.numel() == 0 || std::isfinite(t.sum().item<double>());
  int64_t bad = 0;
  if (!finite) bad = t.numel() - torch::isfinite(t).sum().item<int64_t>();  // 0: a sum that overflowed
  if (seconds) *seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (bad > 0) {
    const int64_t nan = torch::isnan(t).sum().item<int64_t>();
    throw InputError(file + ": tensor \"" + name + "\" holds " + std::to_string(nan) + " NaN and " +
                     std::to_string(bad - nan) + " infinite value(s) of " + std::to_string(t.numel()) +
                     "; refusing to use it");
  }
}

namespace {

// Whether any of `n` words has all its exponent bits set (NaN or infinity). An OR over the whole
// chunk with no early exit, so that it vectorizes (at -O2 as well, by the pragma): about as fast
// as reading the chunk once from cache. The exact count, when one is needed, comes from libtorch.
#pragma GCC push_options
#pragma GCC optimize("tree-vectorize")
template <typename Word>
bool any_nonfinite(const Word* w, size_t n, Word exponent) {
  Word hit = 0;
  for (size_t i = 0; i < n; ++i) hit |= static_cast<Word>((w[i] & exponent) == exponent);
  return hit != 0;
}
#pragma GCC pop_options

}  // namespace

int64_t read_floats_checked(const std::string& file, uint64_t offset, int stored_dtype, at::Tensor& dst,
                            double* seconds) {
  const auto stored = static_cast<torch::ScalarType>(stored_dtype);
  auto is_float = [](torch::ScalarType t) {
    return t == torch::kFloat32 || t == torch::kBFloat16 || t == torch::kFloat16;
  };
  if (!dst.device().is_cpu() || !dst.is_contiguous() || !is_float(dst.scalar_type()) || !is_float(stored))
    throw Error("read_floats_checked: needs float32/bfloat16/float16 data and a contiguous CPU tensor of such a dtype");
  const bool convert = stored != dst.scalar_type();
  const size_t element = c10::elementSize(stored);
  const size_t total = static_cast<size_t>(dst.numel()) * element;
  constexpr size_t kChunk = 1 << 20;  // a multiple of every element size
  // Same dtype: straight into dst. Otherwise through a chunk buffer, converted into dst's slice.
  torch::Tensor buffer = convert ? torch::empty({static_cast<int64_t>(kChunk / element)}, torch::TensorOptions().dtype(stored))
                                 : torch::Tensor();
  torch::Tensor flat = dst.view({-1});
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw EnvironmentError(file + ": cannot open: " + std::strerror(errno));
  int64_t bad = 0;
  for (size_t done = 0; done < total;) {
    const size_t want = std::min(kChunk, total - done);
    char* out = convert ? static_cast<char*>(buffer.data_ptr()) : static_cast<char*>(dst.data_ptr()) + done;
    size_t got = 0;
    while (got < want) {  // a whole chunk (short reads resumed), so conversion sees whole elements
      const ssize_t n = ::pread(fd, out + got, want - got, static_cast<off_t>(offset + done + got));
      if (n <= 0) {
        const int e = errno;
        ::close(fd);
        throw EnvironmentError(file + ": read failed at byte " + std::to_string(offset + done + got) + ": " +
                               (n == 0 ? std::string("unexpected end of file") : std::strerror(e)));
      }
      got += static_cast<size_t>(n);
    }
    const size_t count = want / element;
    const auto t0 = std::chrono::steady_clock::now();
    if (stored == torch::kFloat32)
      bad += any_nonfinite(reinterpret_cast<const uint32_t*>(out), count, uint32_t{0x7f800000});
    else if (stored == torch::kBFloat16)
      bad += any_nonfinite(reinterpret_cast<const uint16_t*>(out), count, uint16_t{0x7f80});
    else
      bad += any_nonfinite(reinterpret_cast<const uint16_t*>(out), count, uint16_t{0x7c00});
    if (seconds) *seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (convert)
      flat.narrow(0, static_cast<int64_t>(done / element), static_cast<int64_t>(count))
          .copy_(buffer.narrow(0, 0, static_cast<int64_t>(count)));
    done += want;
    note_progress();  // a rank still loading weights is working, not stalled
  }
  ::close(fd);
  return bad;
}

}  // namespace ringtune
