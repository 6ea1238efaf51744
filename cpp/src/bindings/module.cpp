// The private extension module mdllm._core: one register_<area> call per bindings file.
#include "common.hpp"
#include "mdllm/geometry.hpp"

#include <exception>
#include <stdexcept>

namespace py = pybind11;

// The one error boundary between the core and Python: the core reports bad input as
// std::invalid_argument, which reaches Python as mdllm.errors.MdllmError (a ValueError), the type
// every user-facing error of the package has. Anything else keeps pybind11's own mapping.
static void translate_core_errors(std::exception_ptr error) {
  try {
    if (error) std::rethrow_exception(error);
  } catch (const std::invalid_argument& e) {
    py::object mdllm_error = py::module_::import("mdllm.errors").attr("MdllmError");
    PyErr_SetString(mdllm_error.ptr(), e.what());
  }
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "mdllm compiled core (private; use the mdllm Python API)";
  py::register_exception_translator(&translate_core_errors);
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
