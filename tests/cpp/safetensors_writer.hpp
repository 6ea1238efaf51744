// Safetensors files written by hand for the C++ tests of the tokenizers' readers (good and corrupt ones).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

struct Entry {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

inline Entry f32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
  Entry e{name, "F32", std::move(shape), std::vector<uint8_t>(v.size() * 4)};
  std::memcpy(e.bytes.data(), v.data(), e.bytes.size());  // the test host is little endian, like the format
  return e;
}

// 8-byte little-endian header length, JSON header, data.
inline void write_safetensors(const std::string& path, const std::vector<Entry>& entries) {
  std::string header = "{";
  size_t offset = 0;
  for (const Entry& e : entries) {
    if (header.size() > 1) header += ",";
    header += "\"" + e.name + "\":{\"dtype\":\"" + e.dtype + "\",\"shape\":[";
    for (size_t i = 0; i < e.shape.size(); ++i) header += (i ? "," : "") + std::to_string(e.shape[i]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + e.bytes.size()) + "]}";
    offset += e.bytes.size();
  }
  header += "}";
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xFF));
  out << header;
  for (const Entry& e : entries) out.write(reinterpret_cast<const char*>(e.bytes.data()), e.bytes.size());
}
