// forward_backward: one function's output and its inputs' gradients, for the kernel tests
// (tests/test_pointwise.cpp, tests/test_threads.cpp). Includes libtorch: for tests that use it.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace ringtune_test {

// Runs f on leaf copies of `inputs` (dtype dt) and back-propagates g: the output, then the
// gradients of the inputs, in that order.
template <typename F>
std::vector<torch::Tensor> forward_backward(F f, const std::vector<torch::Tensor>& inputs, const torch::Tensor& g,
                                            torch::ScalarType dt) {
  std::vector<torch::Tensor> leaves;
  for (const auto& x : inputs) leaves.push_back(x.detach().to(dt).requires_grad_(true));
  auto y = f(leaves);
  y.backward(g.to(dt));
  std::vector<torch::Tensor> r{y.detach()};
  for (const auto& l : leaves) r.push_back(l.grad());
  return r;
}

}  // namespace ringtune_test
