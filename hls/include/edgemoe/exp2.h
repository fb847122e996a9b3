// exp2 unit for x <= 0 (DESIGN.md §3.4): x = -(n + f), 2^x = 2^-n * 2^-f, with 2^-f
// read from EXP2_TABLE and linearly interpolated, then shifted by n.
// Golden: edgemoe.sim.units.exp2_parts / exp2.
#ifndef EDGEMOE_EXP2_H_
#define EDGEMOE_EXP2_H_

#include "edgemoe/config.h"

namespace edgemoe {

/// 2^x as a mantissa with EXP2_FRAC fraction bits and a right shift n.
/// \tparam FRAC fraction bits of x
/// \param x raw input, x <= 0
/// \param mant 2^-f, in (0.5, 1] with EXP2_FRAC fraction bits
/// \param n integer part of -x
template <int FRAC>
inline void exp2_parts(wide_t x, wide_t& mant, wide_t& n) {
  static_assert(FRAC >= EXP2_LUT_BITS, "the table index needs LUT_BITS fraction bits");
  const int RB = FRAC - EXP2_LUT_BITS;  // bits interpolated between table entries
  const wide_t a = -x;
  n = a >> FRAC;
  const wide_t f = a & ((wide_t(1) << FRAC) - 1);
  const int k = static_cast<int>(f >> RB);
  const wide_t r = f & ((wide_t(1) << RB) - 1);
  const wide_t t0 = EXP2_TABLE[k];
  const wide_t t1 = EXP2_TABLE[k + 1];
  mant = t0 - shift_round((t0 - t1) * r, RB);
}

/// 2^x narrowed to the prob format (unsigned, PROB_F fraction bits); 0 far below.
/// \tparam FRAC fraction bits of x
/// \param x raw input, x <= 0
template <int FRAC>
inline wide_t exp2_prob(wide_t x) {
  static_assert(EXP2_FRAC >= PROB_F, "the table is at least as precise as its output");
  wide_t mant, n;
  exp2_parts<FRAC>(x, mant, n);
  wide_t shift = n + (EXP2_FRAC - PROB_F);
  if (shift > EXP2_FRAC + 2) {
    shift = EXP2_FRAC + 2;  // beyond this every mantissa rounds to 0
  }
  return saturate_unsigned<PROB_W>(shift_round(mant, static_cast<int>(shift)));
}

}  // namespace edgemoe

#endif  // EDGEMOE_EXP2_H_
