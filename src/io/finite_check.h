// NaN and infinity in weights read from files.
// defines: require_finite, read_floats_checked
#pragma once
#include <cstdint>
#include <string>

namespace at {
class Tensor;
}  // namespace at

namespace ringtune {

// InputError "FILE: tensor "NAME" holds N NaN and M infinite value(s) of T; refusing to use it"
// unless every value of `t` is finite. One summing pass (a sum is finite when every term is,
// barring overflow, which the exact count then rules out); the seconds it took are added to
// *seconds when given.
void require_finite(const at::Tensor& t, const std::string& file, const std::string& name, double* seconds = nullptr);

// Reads the values of `dst` from `file` at byte `offset`, stored there as `stored_dtype` (a
// c10::ScalarType as int: float32, bfloat16 or float16) into `dst` (CPU, contiguous, one of those
// dtypes too), in 1 MiB chunks, each tested for NaN and infinity while it is still in cache and
// converted to dst's dtype by libtorch when the dtypes differ: the check rides on the one copy
// the load makes anyway. Returns the number of chunks holding a non-finite value (0: all finite).
// EnvironmentError if the read fails. The seconds spent testing are added to *seconds when given.
int64_t read_floats_checked(const std::string& file, uint64_t offset, int stored_dtype, at::Tensor& dst,
                            double* seconds = nullptr);

}  // namespace ringtune
