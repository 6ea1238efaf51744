// Reading safetensors files: an 8-byte little-endian header length, a JSON header mapping tensor
// names to {dtype, shape, data_offsets}, then the raw little-endian data. F32, F16 and BF16 tensors
// are read into float32. Any inconsistency throws std::invalid_argument naming the file.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mdllm {

struct Tensor {
  std::string dtype;  // as stored: "F32", "F16" or "BF16"
  std::vector<int64_t> shape;
  std::vector<float> data;  // row-major, converted to float32
  int64_t numel() const;
};

// All tensors of a file by name; metadata ("__metadata__") is returned separately.
struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

SafetensorsFile read_safetensors(const std::string& path);

// The same, from bytes already in memory (`name` is used in error messages).
SafetensorsFile parse_safetensors(const std::vector<uint8_t>& bytes, const std::string& name);

}  // namespace mdllm
