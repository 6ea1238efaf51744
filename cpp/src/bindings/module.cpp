// The private extension module mdllm._core: one register_<area> call per bindings file.
#include "common.hpp"
#include "mdllm/geometry.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "mdllm compiled core (private; use the mdllm Python API)";
  m.def("set_num_threads", &mdllm::set_num_threads, "Worker threads for batch kernels (0 = all cores)");
  m.def("num_threads", &mdllm::num_threads);
  mdllm::bindings::register_geometry(m);
  mdllm::bindings::register_validity(m);
  mdllm::bindings::register_refine(m);
  mdllm::bindings::register_tokenizer(m);
  mdllm::bindings::register_sampler(m);
#ifdef MDLLM_WITH_LLAMA
  mdllm::bindings::register_generate(m);
  m.attr("has_llama") = true;
#else
  m.attr("has_llama") = false;
#endif
}
