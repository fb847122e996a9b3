// Reciprocal and reciprocal square root (DESIGN.md §3.4): leading-one detect to a
// mantissa, a seed from a table, one Newton step.
// Golden: edgemoe.sim.units.reciprocal / rsqrt.
#ifndef EDGEMOE_NEWTON_H_
#define EDGEMOE_NEWTON_H_

#include "edgemoe/config.h"

namespace edgemoe {

/// Seeds of the reciprocal: one per 2^-RECIP_LUT_BITS step of the mantissa in [1, 2).
constexpr int RECIP_ENTRIES = 1 << RECIP_LUT_BITS;
static_assert(sizeof(RECIP_SEED) == RECIP_ENTRIES * sizeof(int32_t), "table size");

/// 1/s for an integer s >= 1, as y * 2^-(NEWTON_FRAC + p).
/// \param s input, >= 1
/// \param y result mantissa, NEWTON_FRAC fraction bits, in (0.5, 1]
/// \param p exponent: the leading-one position of s
/// \param seed the RECIP_ENTRIES seeds: the caller's own copy (RECIP_SEED, or
///        RECIP_SEED_ATTN in the attention lane: each DATAFLOW process its own ROM)
inline void reciprocal(wide_t s, wide_t& y, int& p, const int32_t seed[RECIP_ENTRIES]) {
  const int R = NEWTON_FRAC;
  const int L = RECIP_LUT_BITS;
  p = bit_length(s) - 1;
  const wide_t m = shift_floor(s, p - R);  // in [1, 2) with R fraction bits
  const int idx = static_cast<int>(m >> (R - L)) - (1 << L);
  const newton_t y0 = newton_t(seed[idx]);
  const wide_t t = shift_round(wide_t(newton_arg_t(m) * y0), R);
  y = shift_round(wide_t(y0 * newton_arg_t((wide_t(2) << R) - t)), R);
}

/// 1/sqrt(v * 2^-FRAC) for raw v >= 1, as y * 2^-(NEWTON_FRAC + h).
/// \tparam FRAC fraction bits of v
/// \param v input, >= 1
/// \param y result mantissa, NEWTON_FRAC fraction bits, in (0.5, 1]
/// \param h half the (even) exponent of v
template <int FRAC>
inline void rsqrt(wide_t v, wide_t& y, int& h) {
  const int R = NEWTON_FRAC;
  const int L = RSQRT_LUT_BITS;
  int p = bit_length(v) - 1;
  p -= (p - FRAC) & 1;                     // make the exponent even: m in [1, 4)
  const wide_t m = shift_floor(v, p - R);  // R fraction bits
  const int idx = static_cast<int>(m >> (R - L + 1)) - (1 << (L - 1));
  const newton_t y0 = newton_t(RSQRT_SEED[idx]);
  const wide_t y2 = shift_round(wide_t(y0 * y0), R);
  const wide_t t = shift_round(wide_t(newton_arg_t(m) * newton_t(y2)), R);
  y = shift_round(wide_t(y0 * newton_arg_t((wide_t(3) << R) - t)), R + 1);
  h = (p - FRAC) >> 1;
}

}  // namespace edgemoe

#endif  // EDGEMOE_NEWTON_H_
