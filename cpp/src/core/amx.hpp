// Dense products on the AMX tile units of recent Intel Xeons (Sapphire Rapids and later), at
// float32-level accuracy: each operand is split into a bfloat16 high part and a bfloat16 remainder,
// and three bf16 tile products (hi*hi + hi*lo + lo*hi) are summed in float32 ("bf16x3"). The relative
// error stays near 1e-5, against 4e-3 for a single bf16 product. Internal to the core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace mdllm::detail {

// Tile rows are 64 bytes: buffers aligned to cache lines keep each row in one line.
template <class T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() = default;
  template <class U>
  CacheAligned(const CacheAligned<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U>
  bool operator==(const CacheAligned<U>&) const { return true; }
  template <class U>
  bool operator!=(const CacheAligned<U>&) const { return false; }
};
using AlignedBf16 = std::vector<uint16_t, CacheAligned<uint16_t>>;

// A linear layer's weight (in, out), split and laid out as AMX B tiles (pairs of rows interleaved),
// zero-padded to whole tiles.
struct PackedLinear {
  int64_t in = 0, out = 0, in_pad = 0, out_pad = 0;
  AlignedBf16 hi, lo;
};

// True once the CPU has AMX-BF16 and AVX512-BF16 and the kernel has granted this process the tile
// state; checked once. MDLLM_NO_AMX=1 in the environment turns it off (for comparisons).
bool amx_enabled();

// w: (in, out) row-major, float32.
PackedLinear amx_pack(const float* w, int64_t in, int64_t out);

// An all-zero packed (in, out) matrix, to be filled block by block with amx_pack_into (e.g. by the
// threads that computed those rows: attention keys and values).
PackedLinear amx_packed_zeros(int64_t in, int64_t out);

// Writes the block k in [k0, k1), n in [n0, n1) of the (in, out) matrix w[k][n] = src[k * ld + n]
// into p. k0 must be even and n0 a multiple of 16, so that blocks never share a tile row. Needs
// amx_enabled().
void amx_pack_into(PackedLinear& p, const float* src, int64_t ld, int64_t k0, int64_t k1, int64_t n0, int64_t n1);

// Rows [0, m) of y (row stride ldy) = x (row stride ldx) W + b (b may be null). Needs amx_enabled().
void amx_product(const float* x, int64_t ldx, int64_t m, const PackedLinear& w, const float* b, float* y,
                 int64_t ldy);

}  // namespace mdllm::detail
