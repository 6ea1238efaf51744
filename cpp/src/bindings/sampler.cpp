// Thin bindings of mdllm/sampler.hpp.
#include <stdexcept>

#include "common.hpp"
#include "mdllm/sampler.hpp"

namespace mdllm::bindings {

namespace s = mdllm::sampling;
using InU64 = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>;
static_assert(sizeof(s::Allowed) == 2 * sizeof(int32_t), "allowed ranges are passed as (rows, 2) int32");

void register_sampler(py::module_& m) {
  m.def("counter_uniform", &s::counter_uniform, py::arg("seed"), py::arg("walker"), py::arg("step"));
  m.def("sample", [](InF32 logits, int64_t rows, int64_t vocab, InI32 allowed, float temperature,
                     int32_t top_k, float top_p, float min_p, uint64_t seed, InU64 walkers, InU64 steps,
                     py::array tokens, py::array logprobs) {
    require_size(logits, rows * vocab, "logits");
    require_size(allowed, rows * 2, "allowed");
    require_size(walkers, rows, "walkers");
    require_size(steps, rows, "steps");
    int32_t* tok = output<int32_t>(tokens, rows, "tokens");
    float* lp = output<float>(logprobs, rows, "logprobs");
    const auto* ranges = reinterpret_cast<const s::Allowed*>(allowed.data());
    const s::Params params{temperature, top_k, top_p, min_p};
    {  // bad input: std::invalid_argument, which module.cpp turns into MdllmError
      py::gil_scoped_release nogil;
      s::sample(logits.data(), rows, vocab, ranges, params, seed, walkers.data(), steps.data(), tok, lp);
    }
  });
  m.def("token_logprobs", [](InF32 logits, int64_t rows, int64_t vocab, InI32 tokens, py::array logprobs) {
    require_size(logits, rows * vocab, "logits");
    require_size(tokens, rows, "tokens");
    float* lp = output<float>(logprobs, rows, "logprobs");
    {  // bad input: std::invalid_argument, which module.cpp turns into MdllmError
      py::gil_scoped_release nogil;
      s::token_logprobs(logits.data(), rows, vocab, tokens.data(), lp);
    }
  });
}

}  // namespace mdllm::bindings
