// GELU (DESIGN.md §3.4): GELU(x) = ReLU(x) - delta(|x|), delta(t) = t * Phi(-t)
// tabulated on [0, GELU_RANGE) with linear interpolation; beyond, GELU = ReLU.
// Golden: edgemoe.sim.units.gelu.
#ifndef EDGEMOE_GELU_H_
#define EDGEMOE_GELU_H_

#include "edgemoe/config.h"

namespace edgemoe {

constexpr int GELU_ENTRIES = GELU_RANGE * (1 << GELU_LUT_BITS) + 1;

/// GELU of a raw value with F fraction bits, same format out (no saturation needed:
/// the result lies between min(x, 0) - 0.17 and x).
/// \tparam F fraction bits of x
template <int F>
inline wide_t gelu(wide_t x) {
  static_assert(F >= GELU_LUT_BITS, "the table index needs GELU_LUT_BITS fraction bits");
  const int SH = F - GELU_LUT_BITS;
  const wide_t a = abs_wide(x);
  const wide_t k = a >> SH;
  wide_t d = 0;
  if (k < GELU_ENTRIES - 1) {
    const int ki = static_cast<int>(k);
    const wide_t r = a & ((wide_t(1) << SH) - 1);
    const wide_t t0 = GELU_TABLE[ki];
    const wide_t t1 = GELU_TABLE[ki + 1];
    // table steps fit GELU_FRAC + 1 bits (delta < 1), r fits SH: one small multiplier
    const wide_t step = wide_t(sint<GELU_FRAC + 1>(t1 - t0) * sint<SH + 1>(r));
    d = shift_round(t0 + shift_round(step, SH), GELU_FRAC - F);
  }
  return (x > 0 ? x : wide_t(0)) - d;
}

}  // namespace edgemoe

#endif  // EDGEMOE_GELU_H_
