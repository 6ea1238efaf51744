// Thin bindings of mdllm/torsion_tokenizer.hpp, mdllm/motion_tokenizer.hpp (one class per kind) and
// mdllm/motion_context.hpp;
// shapes are checked in Python (mdllm.tokenizer.api). std::invalid_argument from the core surfaces as
// ValueError (pybind11's standard translation).
#include <pybind11/stl.h>

#include <optional>

#include "common.hpp"
#include "mdllm/motion_context.hpp"
#include "mdllm/motion_tokenizer.hpp"
#include "mdllm/torsion_tokenizer.hpp"

namespace mdllm::bindings {

namespace {

// A structure tokenizer (mdllm/tokenizer.hpp): construction from (weights, config text), codebook_size,
// encode, decode.
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
  bind_structure_tokenizer<TorsionTokenizer>(m, "TorsionTokenizer")
      .def_property_readonly("beam_width", &TorsionTokenizer::beam_width);
  // Not a structure tokenizer: every call takes the key frame (L, 4, 3) of the same residues.
  py::class_<MotionTokenizer>(m, "MotionTokenizer")
      .def(py::init<const std::string&, const std::string&>(), py::arg("weights_path"), py::arg("config_json"))
      .def_property_readonly("codebook_size", &MotionTokenizer::codebook_size)
      .def("encode",
           [](const MotionTokenizer& t, InF32 xyz, InF32 key, int64_t f, int64_t l, py::array out) {
             require_size(xyz, f * l * 12, "xyz");
             require_size(key, l * 12, "key");
             int32_t* o = output<int32_t>(out, f * l, "tokens");
             py::gil_scoped_release nogil;
             t.encode(xyz.data(), f, l, key.data(), o);
           },
           py::arg("xyz"), py::arg("key"), py::arg("f"), py::arg("l"), py::arg("out"))
      .def("decode",
           [](const MotionTokenizer& t, InI32 tokens, InF32 key, int64_t f, int64_t l, py::array out,
              std::optional<InI32> fine) {
             require_size(tokens, f * l, "tokens");
             require_size(key, l * 12, "key");
             if (fine) require_size(*fine, f * l, "fine");
             float* o = output<float>(out, f * l * 12, "xyz");
             py::gil_scoped_release nogil;
             t.decode(tokens.data(), f, l, key.data(), o, fine ? fine->data() : nullptr);
           },
           py::arg("tokens"), py::arg("key"), py::arg("f"), py::arg("l"), py::arg("out"), py::arg("fine") = py::none())
      .def("load_fine", &MotionTokenizer::load_fine, py::arg("path"))
      .def_property_readonly("has_fine", &MotionTokenizer::has_fine)
      .def("encode_fine",
           [](const MotionTokenizer& t, InF32 xyz, InF32 key, int64_t f, int64_t l, py::array tokens, py::array fine) {
             require_size(xyz, f * l * 12, "xyz");
             require_size(key, l * 12, "key");
             int32_t* o = output<int32_t>(tokens, f * l, "tokens");
             int32_t* g = output<int32_t>(fine, f * l, "fine");
             py::gil_scoped_release nogil;
             t.encode_fine(xyz.data(), f, l, key.data(), o, g);
           },
           py::arg("xyz"), py::arg("key"), py::arg("f"), py::arg("l"), py::arg("tokens"), py::arg("fine"));
  py::class_<MotionContextDecoder>(m, "MotionContextDecoder")
      .def(py::init<const std::string&, const MotionTokenizer&>(), py::arg("weights_path"), py::arg("tokenizer"))
      .def_property_readonly("window", &MotionContextDecoder::window)
      .def_property_readonly("spatial", &MotionContextDecoder::spatial)
      .def_property_readonly("ahead", &MotionContextDecoder::ahead)
      .def_static(
          "residue_classes",
          [](const std::string& sequence, InF32 key, int64_t l) {
            require_size(key, l * 12, "key");
            return MotionContextDecoder::residue_classes(sequence, key.data(), l);
          },
          py::arg("sequence"), py::arg("key"), py::arg("l"))
      .def("decode",
           [](const MotionContextDecoder& d, InI32 tokens, InF32 key, std::optional<InI32> classes, int64_t f,
              int64_t l, py::array out, std::optional<InI32> fine) {
             require_size(tokens, f * l, "tokens");
             require_size(key, l * 12, "key");
             if (classes) require_size(*classes, l, "classes");
             float* o = output<float>(out, f * l * 12, "xyz");
             const int32_t* c = classes ? classes->data() : nullptr;
             if (fine) require_size(*fine, f * l, "fine");
             py::gil_scoped_release nogil;
             d.decode(tokens.data(), f, l, key.data(), c, o, fine ? fine->data() : nullptr);
           },
           py::arg("tokens"), py::arg("key"), py::arg("classes"), py::arg("f"), py::arg("l"), py::arg("out"),
           py::arg("fine") = py::none());
}

}  // namespace mdllm::bindings
