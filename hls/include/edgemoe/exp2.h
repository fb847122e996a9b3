// exp2 unit for x <= 0 (DESIGN.md §3.4): x = -(n + f), 2^x = 2^-n * 2^-f, with 2^-f
// read from EXP2_TABLE and linearly interpolated, then shifted by n.
// Golden: edgemoe.sim.units.exp2_parts / exp2.
#ifndef EDGEMOE_EXP2_H_
#define EDGEMOE_EXP2_H_

#include "edgemoe/config.h"

namespace edgemoe {

/// Points of the 2^-f table: one per 2^-EXP2_LUT_BITS step of f in [0, 1], both ends.
constexpr int EXP2_ENTRIES = (1 << EXP2_LUT_BITS) + 1;
static_assert(sizeof(EXP2_TABLE) == EXP2_ENTRIES * sizeof(int32_t), "table size");

/// 2^x as a mantissa with EXP2_FRAC fraction bits and a right shift n.
/// \tparam FRAC fraction bits of x
/// \param x raw input, x <= 0
/// \param mant 2^-f, in (0.5, 1] with EXP2_FRAC fraction bits
/// \param n integer part of -x
/// \param table 2^-f at the EXP2_ENTRIES table points: the caller's own copy (EXP2_TABLE, or
///        EXP2_TABLE_ATTN in the attention lane: each DATAFLOW process its own ROM)
template <int FRAC>
inline void exp2_parts(wide_t x, wide_t& mant, wide_t& n, const int32_t table[EXP2_ENTRIES]) {
  static_assert(FRAC >= EXP2_LUT_BITS, "the table index needs LUT_BITS fraction bits");
  const int RB = FRAC - EXP2_LUT_BITS;  // bits interpolated between table entries
  const wide_t a = -x;
  n = a >> FRAC;
  const wide_t f = a & ((wide_t(1) << FRAC) - 1);
  const int k = static_cast<int>(f >> RB);
  const wide_t r = f & ((wide_t(1) << RB) - 1);
  const wide_t t0 = table[k];
  const wide_t t1 = table[k + 1];
  // table steps fit EXP2_FRAC + 1 bits (entries in [0.5, 1]), r fits RB bits
  mant = t0 - shift_round(wide_t(sint<EXP2_FRAC + 1>(t0 - t1) * sint<RB + 1>(r)), RB);
}

/// 2^x narrowed to the prob format (unsigned, PROB_F fraction bits); 0 far below.
/// \tparam FRAC fraction bits of x
/// \param x raw input, x <= 0
/// \param table as for exp2_parts
template <int FRAC>
inline wide_t exp2_prob(wide_t x, const int32_t table[EXP2_ENTRIES]) {
  static_assert(EXP2_FRAC >= PROB_F, "the table is at least as precise as its output");
  wide_t mant, n;
  exp2_parts<FRAC>(x, mant, n, table);
  wide_t shift = n + (EXP2_FRAC - PROB_F);
  if (shift > EXP2_FRAC + 2) {
    shift = EXP2_FRAC + 2;  // beyond this every mantissa rounds to 0
  }
  return saturate_unsigned<PROB_W>(shift_round(mant, static_cast<int>(shift)));
}

}  // namespace edgemoe

#endif  // EDGEMOE_EXP2_H_
