// GELU (docs/numerics.md): GELU(x) = ReLU(x) - delta(|x|), delta(t) = t * Phi(-t)
// tabulated on [0, GELU_RANGE) with linear interpolation; beyond, GELU = ReLU.
//
// The table is read twice per output (the entries either side of |x|), by each of the
// linear epilogue's LIN_OUT lanes in the same pipeline iteration. One table in one ROM
// would take 2 * LIN_OUT reads a cycle from a memory of at most two ports (UG1448 200-885;
// UG1399 "Const": a const array is a ROM), and Vitis does not replicate a ROM by itself.
// So the parameter header holds the table as GELU_COPIES copies, one per pair of lanes,
// each split into its even and odd entries (GELU_ROM[copy][k % 2][k / 2]): the two
// entries either side of |x| are always one even and one odd, so each lane reads each
// half once, and a dual-port ROM serves its two lanes (see lin_compute's pragmas).
// Golden: edgemoe.sim.units.gelu.
#ifndef EDGEMOE_GELU_H_
#define EDGEMOE_GELU_H_

#include "edgemoe/config.h"

namespace edgemoe {

constexpr int GELU_ENTRIES = GELU_RANGE * (1 << GELU_LUT_BITS) + 1;
static_assert(GELU_HALF == (GELU_ENTRIES + 1) / 2, "the header's GELU_ROM halves the table");

/// GELU of a raw value with F fraction bits, same format out (no saturation needed:
/// the result lies between min(x, 0) - 0.17 and x).
/// \tparam F fraction bits of x
/// \param copy the table copy this lane reads (a constant per unrolled lane)
template <int F>
inline wide_t gelu(wide_t x, int copy = 0) {
#pragma HLS INLINE  // a lane of the epilogue: its copy index is a constant there
  static_assert(F >= GELU_LUT_BITS, "the table index needs GELU_LUT_BITS fraction bits");
  const int SH = F - GELU_LUT_BITS;
  const wide_t a = abs_wide(x);
  const wide_t k = a >> SH;
  wide_t d = 0;
  if (k < GELU_ENTRIES - 1) {
    const int ki = static_cast<int>(k);
    const bool odd = (ki & 1) != 0;
    // entries ki and ki + 1: one read of each half
    const wide_t e = GELU_ROM[copy][0][(ki + 1) >> 1];  // entry 2 * ((ki + 1) / 2)
    const wide_t o = GELU_ROM[copy][1][ki >> 1];        // entry 2 * (ki / 2) + 1
    const wide_t t0 = odd ? o : e;
    const wide_t t1 = odd ? e : o;
    const wide_t r = a & ((wide_t(1) << SH) - 1);
    // table steps fit GELU_FRAC + 1 bits (delta < 1), r fits SH: one small multiplier
    const wide_t step = wide_t(sint<GELU_FRAC + 1>(t1 - t0) * sint<SH + 1>(r));
    d = shift_round(t0 + shift_round(step, SH), GELU_FRAC - F);
  }
  return (x > 0 ? x : wide_t(0)) - d;
}

}  // namespace edgemoe

#endif  // EDGEMOE_GELU_H_
