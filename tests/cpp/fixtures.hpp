// Fixtures of the C++ tokenizer tests: safetensors files written by hand (good and corrupt ones) and a
// fixed rigid motion of a point set.
#pragma once

#include <cmath>
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

// The points (x, y, z, x, y, z, ...) under one fixed rotation (Euler angles) and translation (nm).
inline std::vector<float> rigid_motion(const std::vector<float>& xyz) {
  const double a = 0.7, b = -1.3, c = 2.1;  // Euler angles
  const double R[3][3] = {
      {std::cos(a) * std::cos(b), std::cos(a) * std::sin(b) * std::sin(c) - std::sin(a) * std::cos(c),
       std::cos(a) * std::sin(b) * std::cos(c) + std::sin(a) * std::sin(c)},
      {std::sin(a) * std::cos(b), std::sin(a) * std::sin(b) * std::sin(c) + std::cos(a) * std::cos(c),
       std::sin(a) * std::sin(b) * std::cos(c) - std::cos(a) * std::sin(c)},
      {-std::sin(b), std::cos(b) * std::sin(c), std::cos(b) * std::cos(c)}};
  const double shift[3] = {3.2, -1.5, 0.8};  // nm
  std::vector<float> moved(xyz.size());
  for (size_t p = 0; p < xyz.size(); p += 3)
    for (int r = 0; r < 3; ++r)
      moved[p + r] = static_cast<float>(R[r][0] * xyz[p] + R[r][1] * xyz[p + 1] + R[r][2] * xyz[p + 2] + shift[r]);
  return moved;
}
