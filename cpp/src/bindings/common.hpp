// Helpers shared by the binding files: typed array aliases and size checks that keep a wrong
// call from the Python layer an exception instead of a memory error.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "mdllm/validity.hpp"

namespace mdllm::bindings {

namespace py = pybind11;

using InF32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using InI32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using InU8 = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

template <class Array>
void require_size(const Array& a, int64_t expected, const char* name) {
  if (a.size() != expected)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(expected) +
                          " elements, got " + std::to_string(a.size()));
}

// The 16 floats of mdllm.evaluate.validity's ideal table (bonds, their sigmas, angles, their sigmas) as
// the core's struct.
inline validity::IdealGeometry ideal_geometry(const InF32& ideal) {
  require_size(ideal, 16, "ideal (bond, bond_sigma, angle, angle_sigma)");
  validity::IdealGeometry g;
  std::copy(ideal.data(), ideal.data() + 4, g.bond);
  std::copy(ideal.data() + 4, ideal.data() + 8, g.bond_sigma);
  std::copy(ideal.data() + 8, ideal.data() + 12, g.angle);
  std::copy(ideal.data() + 12, ideal.data() + 16, g.angle_sigma);
  return g;
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
