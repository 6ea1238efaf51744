// Thin bindings of mdllm/tokenizer.hpp and mdllm/torsion_tokenizer.hpp; shapes are checked in Python
// (mdllm.tokenizer.api).
#include "common.hpp"
#include "mdllm/tokenizer.hpp"
#include "mdllm/torsion_tokenizer.hpp"

namespace mdllm::bindings {

namespace {

// What both kinds share: construction from (weights, config text), codebook_size, encode, decode.
template <class T>
py::class_<T> bind_structure_tokenizer(py::module_& m, const char* name) {
  return py::class_<T>(m, name)
      .def(py::init<const std::string&, const std::string&>(), py::arg("weights_path"), py::arg("config_json"))
      .def_property_readonly("codebook_size", &T::codebook_size)
      .def("encode", [](const T& t, InF32 xyz, int64_t f, int64_t l, py::array out) {
        require_size(xyz, f * l * 12, "xyz");
        int32_t* o = output<int32_t>(out, f * l, "tokens");
        py::gil_scoped_release nogil;
        t.encode(xyz.data(), f, l, o);
      })
      .def("decode", [](const T& t, InI32 tokens, int64_t f, int64_t l, py::array out) {
        require_size(tokens, f * l, "tokens");
        float* o = output<float>(out, f * l * 12, "xyz");
        py::gil_scoped_release nogil;
        t.decode(tokens.data(), f, l, o);
      });
}

}  // namespace

void register_tokenizer(py::module_& m) {
  bind_structure_tokenizer<Tokenizer>(m, "Tokenizer")
      .def("encode_digits", [](const Tokenizer& t, InF32 xyz, int64_t f, int64_t l, py::array out) {
        require_size(xyz, f * l * 12, "xyz");
        float* o = output<float>(out, f * l * static_cast<int64_t>(t.config().levels.size()), "digits");
        py::gil_scoped_release nogil;
        t.encode_digits(xyz.data(), f, l, o);
      });
  bind_structure_tokenizer<TorsionTokenizer>(m, "TorsionTokenizer")
      .def_property_readonly("beam_width", &TorsionTokenizer::beam_width);
}

}  // namespace mdllm::bindings
