// Reciprocal and reciprocal square root (docs/numerics.md): leading-one detect to a
// mantissa, a seed from a table, one Newton step.
// Golden: edgemoe.sim.units.reciprocal / rsqrt.
//
// Widths (hls/README.md, F10): each unit is a template on the width W of its input,
// so the leading-one detector is a W-input priority encoder and the normaliser a W-bit
// left shifter by the leading zeros (0..W): m = floor(s * 2^(R - p)) is the normalised
// s (leading one at bit W - 1) shifted by the constant R - W + 1, which is wiring. The
// kernel instantiates it at the widths of the sums it inverts; reciprocal() and rsqrt()
// below are the full-range instances (inputs below 2^62) the unit sweeps test.
#ifndef EDGEMOE_NEWTON_H_
#define EDGEMOE_NEWTON_H_

#include "edgemoe/config.h"

namespace edgemoe {

/// Seeds of the reciprocal: one per 2^-RECIP_LUT_BITS step of the mantissa in [1, 2).
constexpr int RECIP_ENTRIES = 1 << RECIP_LUT_BITS;
static_assert(sizeof(RECIP_SEED) == RECIP_ENTRIES * sizeof(int32_t), "table size");

/// Widest input of the full-range instances (the normalised value stays below 2^63).
constexpr int NEWTON_FULL_W = 62;
/// A Newton-step product: newton_arg_t (NEWTON_FRAC + 4 bits signed) x newton_t
/// (NEWTON_FRAC + 1 unsigned).
constexpr int NEWTON_PROD_W = 2 * NEWTON_FRAC + 5;

/// Position of the leading one of a W-bit v >= 1 (bit_length(v) - 1): a W-input priority
/// encoder.
template <int W>
inline int lead_one(uint<W> v) {
#if EDGEMOE_USE_AP_TYPES
  int n = 0;
lead_one_scan:
  for (int b = 0; b < W; ++b) {
#pragma HLS UNROLL  // a priority encoder, one level of logic per bit
    if (v[b]) {
      n = b;
    }
  }
  return n;
#else
  return 63 - __builtin_clzll(static_cast<uint64_t>(v));
#endif
}

/// floor(s * 2^(R - p)) for 1 <= s < 2^W and p <= lead_one(s) (so the result is below
/// 2^(R + 1 + lead_one(s) - p)): s shifted left by W - 1 - p (0..W, one W + 1-bit
/// shifter), then by the constant R - W + 1 (wiring). Equal to shift_floor(s, p - R).
template <int W>
inline wide_t newton_normalise(uint<W> s, int p) {
  const int R = NEWTON_FRAC;
  const uint<Bits<W>::value> lz = W - 1 - p;   // the shifter's select, 0..W
  const uint<W + 1> u = uint<W + 1>(s) << lz;  // exact: the top bit is W at most
  return R >= W - 1 ? wide_t(wide_t(u) << (R >= W - 1 ? R - W + 1 : 0))
                    : wide_t(wide_t(u) >> (R >= W - 1 ? 0 : W - 1 - R));
}

/// 1/s for an integer 1 <= s < 2^W, as y * 2^-(NEWTON_FRAC + p).
/// \tparam W bits of s (unsigned)
/// \param s input, >= 1
/// \param y result mantissa, NEWTON_FRAC fraction bits, in (0.5, 1]
/// \param p exponent: the leading-one position of s, 0..W - 1
/// \param seed the RECIP_ENTRIES seeds: the caller's own copy (RECIP_SEED, or
///        RECIP_SEED_ATTN in the attention lane: each DATAFLOW process its own ROM)
template <int W>
inline void reciprocal_w(uint<W> s, wide_t& y, int& p, const int32_t seed[RECIP_ENTRIES]) {
  static_assert(W >= 1 && W <= NEWTON_FULL_W, "the normalised input fits 63 bits");
  const int R = NEWTON_FRAC;
  const int L = RECIP_LUT_BITS;
  check_range(wide_t(s), 1, (wide_t(1) << W) - 1, "reciprocal input");
  p = lead_one<W>(s);
  const wide_t m = newton_normalise<W>(s, p);  // in [1, 2) with R fraction bits
  const int idx = static_cast<int>(m >> (R - L)) - (1 << L);
  const newton_t y0 = newton_t(seed[idx]);
  // Newton step at the operands' widths: newton_arg_t x newton_t products (NEWTON_PROD_W)
  const sint<NEWTON_PROD_W> mt = newton_arg_t(m) * y0;
  const wide_t t = shift_round_const<NEWTON_FRAC, NEWTON_PROD_W>(mt);
  const sint<NEWTON_PROD_W> yt = y0 * newton_arg_t((wide_t(2) << R) - t);
  y = shift_round_const<NEWTON_FRAC, NEWTON_PROD_W>(yt);
}

/// The full-range reciprocal (1 <= s < 2^NEWTON_FULL_W).
inline void reciprocal(wide_t s, wide_t& y, int& p, const int32_t seed[RECIP_ENTRIES]) {
  reciprocal_w<NEWTON_FULL_W>(uint<NEWTON_FULL_W>(s), y, p, seed);
}

/// 1/sqrt(v * 2^-FRAC) for raw 1 <= v < 2^W, as y * 2^-(NEWTON_FRAC + h).
/// \tparam W bits of v (unsigned)
/// \tparam FRAC fraction bits of v
/// \param v input, >= 1
/// \param y result mantissa, NEWTON_FRAC fraction bits, in (0.5, 1]
/// \param h half the (even) exponent of v: (p - FRAC) / 2 with p in [-1, W - 1]
template <int W, int FRAC>
inline void rsqrt_w(uint<W> v, wide_t& y, int& h) {
  static_assert(W >= 1 && W <= NEWTON_FULL_W, "the normalised input fits 63 bits");
  const int R = NEWTON_FRAC;
  const int L = RSQRT_LUT_BITS;
  check_range(wide_t(v), 1, (wide_t(1) << W) - 1, "rsqrt input");
  int p = lead_one<W>(v);
  p -= (p - FRAC) & 1;                         // make the exponent even: m in [1, 4)
  const wide_t m = newton_normalise<W>(v, p);  // R fraction bits
  const int idx = static_cast<int>(m >> (R - L + 1)) - (1 << (L - 1));
  const newton_t y0 = newton_t(RSQRT_SEED[idx]);
  const sint<NEWTON_PROD_W> yy = y0 * y0;  // (0.25, 1]: 2R + 1 bits unsigned
  const wide_t y2 = shift_round_const<NEWTON_FRAC, NEWTON_PROD_W>(yy);
  const sint<NEWTON_PROD_W> mt = newton_arg_t(m) * newton_t(y2);
  const wide_t t = shift_round_const<NEWTON_FRAC, NEWTON_PROD_W>(mt);
  const sint<NEWTON_PROD_W> yt = y0 * newton_arg_t((wide_t(3) << R) - t);
  y = shift_round_const<NEWTON_FRAC + 1, NEWTON_PROD_W>(yt);
  h = (p - FRAC) >> 1;
}

/// The full-range rsqrt (1 <= v < 2^NEWTON_FULL_W).
template <int FRAC>
inline void rsqrt(wide_t v, wide_t& y, int& h) {
  rsqrt_w<NEWTON_FULL_W, FRAC>(uint<NEWTON_FULL_W>(v), y, h);
}

}  // namespace edgemoe

#endif  // EDGEMOE_NEWTON_H_
