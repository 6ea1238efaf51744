#include "mdllm/safetensors.hpp"

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>

#include "json.hpp"

namespace mdllm {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;

[[noreturn]] void bad(const std::string& name, const std::string& what) {
  throw std::invalid_argument(name + ": " + what);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1u, exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
  float value;
  if (exponent == 0) value = std::ldexp(static_cast<float>(mantissa), -24);  // zero or subnormal
  else if (exponent == 31) value = mantissa ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else value = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  return sign ? -value : value;
}

float bf16_to_float(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

int64_t as_size(const detail::Json& v, const std::string& name, const std::string& what) {
  if (!v.is_number() || v.number < 0 || v.number > 9.0e15 || v.number != static_cast<double>(static_cast<int64_t>(v.number)))
    bad(name, what + " must be a non-negative integer");
  return static_cast<int64_t>(v.number);
}

}  // namespace

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile parse_safetensors(const std::vector<uint8_t>& bytes, const std::string& name) {
  if (bytes.size() < 8) bad(name, "too short to be a safetensors file");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes || header_len > bytes.size() - 8)
    bad(name, "header length " + std::to_string(header_len) + " does not fit the file (not a safetensors file?)");
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, header_len);
  detail::Json root;
  try {
    root = detail::parse_json(header);
  } catch (const std::invalid_argument& e) {
    bad(name, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!root.is_object()) bad(name, "header is not a JSON object");
  const uint8_t* data = bytes.data() + 8 + header_len;
  const uint64_t data_size = bytes.size() - 8 - header_len;

  SafetensorsFile file;
  for (const auto& [key, entry] : root.object) {
    if (key == "__metadata__") {
      if (!entry.is_object()) bad(name, "__metadata__ is not an object");
      for (const auto& [mk, mv] : entry.object)
        if (mv.is_string()) file.metadata[mk] = mv.string;
      continue;
    }
    const std::string where = "tensor '" + key + "'";
    if (!entry.is_object()) bad(name, where + " entry is not an object");
    const detail::Json* dtype = entry.find("dtype");
    const detail::Json* shape = entry.find("shape");
    const detail::Json* offsets = entry.find("data_offsets");
    if (!dtype || !dtype->is_string() || !shape || !shape->is_array() || !offsets || !offsets->is_array() ||
        offsets->array.size() != 2)
      bad(name, where + " lacks dtype, shape or data_offsets");
    int64_t element = 0;
    if (dtype->string == "F32") element = 4;
    else if (dtype->string == "F16" || dtype->string == "BF16") element = 2;
    else bad(name, where + " has dtype " + dtype->string + " (only F32, F16 and BF16 are supported)");
    Tensor t;
    t.dtype = dtype->string;
    int64_t numel = 1;
    for (const auto& d : shape->array) {
      const int64_t n = as_size(d, name, where + " shape");
      if (n != 0 && numel > std::numeric_limits<int64_t>::max() / 8 / n) bad(name, where + " is too large");
      numel *= n;
      t.shape.push_back(n);
    }
    const int64_t begin = as_size(offsets->array[0], name, where + " offset");
    const int64_t end = as_size(offsets->array[1], name, where + " offset");
    if (begin > end || static_cast<uint64_t>(end) > data_size)
      bad(name, where + " data offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                    ") lie outside the data (" + std::to_string(data_size) + " bytes; truncated file?)");
    if (end - begin != numel * element)
      bad(name, where + " holds " + std::to_string(end - begin) + " bytes, its shape needs " +
                    std::to_string(numel * element));
    t.data.resize(static_cast<size_t>(numel));
    const uint8_t* src = data + begin;
    for (int64_t i = 0; i < numel; ++i) {
      if (element == 4) {
        uint32_t bits = static_cast<uint32_t>(src[4 * i]) | static_cast<uint32_t>(src[4 * i + 1]) << 8 |
                        static_cast<uint32_t>(src[4 * i + 2]) << 16 | static_cast<uint32_t>(src[4 * i + 3]) << 24;
        std::memcpy(&t.data[i], &bits, 4);
      } else {
        const uint16_t h = static_cast<uint16_t>(src[2 * i] | src[2 * i + 1] << 8);
        t.data[i] = dtype->string == "F16" ? half_to_float(h) : bf16_to_float(h);
      }
    }
    file.tensors.emplace(key, std::move(t));
  }
  return file;
}

SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad(path, "cannot open file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_safetensors(bytes, path);
}

}  // namespace mdllm
