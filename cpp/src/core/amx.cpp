#include "amx.hpp"

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define MDLLM_HAVE_AMX 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace mdllm::detail {

namespace {

constexpr int64_t kTileRows = 16;  // rows of every tile used here
constexpr int64_t kTileK = 32;     // bf16 values per A-tile row (64 bytes)
constexpr int64_t kTileN = 16;     // float32 outputs per C-tile row
constexpr int64_t kTileElems = kTileRows * kTileK;

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

}  // namespace

#ifdef MDLLM_HAVE_AMX

#define MDLLM_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16")))

namespace {

bool cpu_and_os_allow_amx() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool avx512 = (b >> 16 & 1) && (b >> 30 & 1);  // F, BW
  const bool amx = (d >> 22 & 1) && (d >> 24 & 1);      // AMX-BF16, AMX-TILE
  if (!avx512 || !amx || a < 1) return false;
  if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a >> 5 & 1)) return false;  // AVX512-BF16
  constexpr long kReqXcompPerm = 0x1023, kXfeatureTileData = 18;
  return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureTileData) == 0;
}

struct TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// v minus its bf16 rounding (to nearest even, as the conversion instructions round): the remainder
// that the low bf16 part carries. Zero-masked shift: GCC 12 warns about the unmasked form's undefined
// passthrough inside target-attribute functions.
MDLLM_AMX inline __m512 bf16_remainder(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_maskz_srli_epi32(0xffff, u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
  return _mm512_sub_ps(v, _mm512_castsi512_ps(_mm512_and_si512(rounded, _mm512_set1_epi32(-65536))));
}

// x rows [0, m) -> bf16 high and low parts, (rows rounded up to 16) x in_pad, zero-padded.
MDLLM_AMX void split_rows(const float* x, int64_t ldx, int64_t m, int64_t in, int64_t in_pad, uint16_t* hi,
                          uint16_t* lo) {
  const int64_t mp = round_up(m, kTileRows);
  for (int64_t r = 0; r < mp; ++r) {
    uint16_t *h = hi + r * in_pad, *l = lo + r * in_pad;
    for (int64_t k = 0; k < in_pad; k += 16) {
      __m512 v = _mm512_setzero_ps();
      if (r < m && k < in) {
        const int64_t left = in - k;
        const __mmask16 mask = left >= 16 ? 0xffff : static_cast<__mmask16>((1u << left) - 1);
        v = _mm512_maskz_loadu_ps(mask, x + r * ldx + k);
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(h + k), (__m256i)_mm512_cvtneps_pbh(v));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(l + k), (__m256i)_mm512_cvtneps_pbh(bf16_remainder(v)));
    }
  }
}

// Tiles 0-1: two 16x16 float accumulators side by side (32 outputs); 2-3: A high/low; 4-7: B high/low
// of the two output blocks.
MDLLM_AMX void product_tiles(const uint16_t* ahi, const uint16_t* alo, int64_t m, const PackedLinear& w,
                             const float* b, float* y, int64_t ldy) {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) cfg.rows[t] = kTileRows, cfg.colsb[t] = 64;
  _tile_loadconfig(&cfg);
  const int64_t k_chunks = w.in_pad / kTileK, a_stride = w.in_pad * 2;
  alignas(64) float c[kTileRows][2 * kTileN];
  // output blocks outermost: one block's B tiles (16 KB for in = 128) stay in L1 while the rows pass
  for (int64_t n0 = 0; n0 < w.out_pad; n0 += 2 * kTileN) {
    const uint16_t* b0_hi = w.hi.data() + (n0 / kTileN) * k_chunks * kTileElems;
    const uint16_t* b0_lo = w.lo.data() + (n0 / kTileN) * k_chunks * kTileElems;
    const uint16_t* b1_hi = b0_hi + k_chunks * kTileElems;
    const uint16_t* b1_lo = b0_lo + k_chunks * kTileElems;
    for (int64_t m0 = 0; m0 < m; m0 += kTileRows) {
      const uint16_t *arow_hi = ahi + m0 * w.in_pad, *arow_lo = alo + m0 * w.in_pad;
      _tile_zero(0);
      _tile_zero(1);
      for (int64_t kc = 0; kc < k_chunks; ++kc) {
        _tile_loadd(2, arow_hi + kc * kTileK, a_stride);
        _tile_loadd(3, arow_lo + kc * kTileK, a_stride);
        _tile_loadd(4, b0_hi + kc * kTileElems, 64);
        _tile_loadd(5, b0_lo + kc * kTileElems, 64);
        _tile_loadd(6, b1_hi + kc * kTileElems, 64);
        _tile_loadd(7, b1_lo + kc * kTileElems, 64);
        _tile_dpbf16ps(0, 2, 4);
        _tile_dpbf16ps(0, 2, 5);
        _tile_dpbf16ps(0, 3, 4);
        _tile_dpbf16ps(1, 2, 6);
        _tile_dpbf16ps(1, 2, 7);
        _tile_dpbf16ps(1, 3, 6);
      }
      _tile_stored(0, &c[0][0], sizeof(c[0]));
      _tile_stored(1, &c[0][kTileN], sizeof(c[0]));
      const int64_t rows = m - m0 < kTileRows ? m - m0 : kTileRows;
      const int64_t cols = w.out - n0 < 2 * kTileN ? w.out - n0 : 2 * kTileN;
      for (int64_t j = 0; j < cols; j += 16) {
        const __mmask16 mask = cols - j >= 16 ? 0xffff : static_cast<__mmask16>((1u << (cols - j)) - 1);
        const __m512 bias = b ? _mm512_maskz_loadu_ps(mask, b + n0 + j) : _mm512_setzero_ps();
        for (int64_t r = 0; r < rows; ++r)
          _mm512_mask_storeu_ps(y + (m0 + r) * ldy + n0 + j, mask, _mm512_add_ps(_mm512_load_ps(&c[r][j]), bias));
      }
    }
  }
  _tile_release();
}

// a, b (16 floats each) -> bf16 a0 b0 a1 b1 ... a15 b15: one tile row of a k pair
MDLLM_AMX inline __m512i interleave_bf16(__m512 a, __m512 b) {
  alignas(64) static const uint16_t order[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(b, a);  // a0..a15 b0..b15
  return _mm512_permutexvar_epi16(_mm512_load_si512(order), both);
}

}  // namespace

MDLLM_AMX void amx_pack_into(PackedLinear& p, const float* src, int64_t ld, int64_t k0, int64_t k1, int64_t n0,
                             int64_t n1) {
  const int64_t k_chunks = p.in_pad / kTileK;
  for (int64_t k = k0; k < k1; k += 2) {
    const bool second = k + 1 < k1;
    for (int64_t n = n0; n < n1; n += kTileN) {
      const int64_t count = n1 - n < kTileN ? n1 - n : kTileN;
      const __mmask16 mask = count == kTileN ? 0xffff : static_cast<__mmask16>((1u << count) - 1);
      const __m512 a = _mm512_maskz_loadu_ps(mask, src + k * ld + n);
      const __m512 b = second ? _mm512_maskz_loadu_ps(mask, src + (k + 1) * ld + n) : _mm512_setzero_ps();
      const int64_t pos = ((n / kTileN) * k_chunks + k / kTileK) * kTileElems + (k % kTileK / 2) * kTileK;
      const __mmask32 pairs = count == kTileN ? 0xffffffffu : static_cast<__mmask32>((1ull << (2 * count)) - 1);
      _mm512_mask_storeu_epi16(p.hi.data() + pos, pairs, interleave_bf16(a, b));
      _mm512_mask_storeu_epi16(p.lo.data() + pos, pairs, interleave_bf16(bf16_remainder(a), bf16_remainder(b)));
    }
  }
}

bool amx_enabled() {
  static const bool enabled = [] {
    const char* off = std::getenv("MDLLM_NO_AMX");
    if (off && *off && std::strcmp(off, "0") != 0) return false;
    return cpu_and_os_allow_amx();
  }();
  return enabled;
}

void amx_product(const float* x, int64_t ldx, int64_t m, const PackedLinear& w, const float* b, float* y,
                 int64_t ldy) {
  if (m <= 0) return;
  thread_local AlignedBf16 hi, lo;
  const size_t need = static_cast<size_t>(round_up(m, kTileRows) * w.in_pad);
  if (hi.size() < need) hi.resize(need), lo.resize(need);
  split_rows(x, ldx, m, w.in, w.in_pad, hi.data(), lo.data());
  product_tiles(hi.data(), lo.data(), m, w, b, y, ldy);
}

#else  // no AMX on this platform

bool amx_enabled() { return false; }

void amx_product(const float*, int64_t, int64_t, const PackedLinear&, const float*, float*, int64_t) {}

void amx_pack_into(PackedLinear&, const float*, int64_t, int64_t, int64_t, int64_t, int64_t) {}

#endif

PackedLinear amx_packed_zeros(int64_t in, int64_t out) {
  PackedLinear p;
  p.in = in, p.out = out;
  p.in_pad = round_up(in, kTileK);
  p.out_pad = round_up(out, 2 * kTileN);
  p.hi.assign(static_cast<size_t>(p.in_pad * p.out_pad), 0);
  p.lo.assign(p.hi.size(), 0);
  return p;
}

PackedLinear amx_pack(const float* w, int64_t in, int64_t out) {
  PackedLinear p = amx_packed_zeros(in, out);
  amx_pack_into(p, w, out, 0, in, 0, out);
  return p;
}

}  // namespace mdllm::detail
