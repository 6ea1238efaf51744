// Helpers shared by the binding files: typed array aliases and size checks that keep a wrong
// call from the Python layer an exception instead of a memory error.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace mdllm::bindings {

namespace py = pybind11;

using InF32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using InI32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

template <class Array>
void require_size(const Array& a, int64_t expected, const char* name) {
  if (a.size() != expected)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(expected) +
                          " elements, got " + std::to_string(a.size()));
}

// An output array is written in place, so it must already be of the right dtype, C-contiguous,
// writeable and of the expected size: a silent converted copy would lose the result.
template <class T>
T* output(py::array a, int64_t expected, const char* name) {
  if (!py::isinstance<py::array_t<T>>(a) || !(a.flags() & py::array::c_style) || !a.writeable())
    throw py::type_error(std::string(name) + ": expected a writeable C-contiguous array of " +
                         py::str(py::dtype::of<T>()).cast<std::string>());
  require_size(a, expected, name);
  return static_cast<T*>(a.mutable_data());
}

void register_geometry(py::module_& m);
void register_tokenizer(py::module_& m);
void register_sampler(py::module_& m);
void register_generate(py::module_& m);  // only with llama.cpp
void register_validity(py::module_& m);
void register_refine(py::module_& m);

}  // namespace mdllm::bindings
