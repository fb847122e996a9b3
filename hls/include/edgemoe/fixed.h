// Fixed-point arithmetic on raw integers: the one narrowing rule of the datapath.
//
// A value in fixed<W, I> is held as its raw integer and means raw * 2^-(W - I).
// Products are exact; every narrowing rounds half up (floor(x + 1/2), AP_RND) and
// saturates (AP_SAT). edgemoe.host.contracts.fixedpoint defines the same two operations for the
// golden model; bit-exactness between the two rests on these definitions.
#ifndef EDGEMOE_FIXED_H_
#define EDGEMOE_FIXED_H_

#include <ap_int.h>
#include <stdint.h>

#if defined(__SYNTHESIS__) || defined(EDGEMOE_AP_TYPES)
#define EDGEMOE_USE_AP_TYPES 1
#else
#define EDGEMOE_USE_AP_TYPES 0
#endif

namespace edgemoe {

#if EDGEMOE_USE_AP_TYPES
/// Signed integer of exactly W bits (synthesis, and the C-sim reference build).
template <int W>
using sint = ap_int<W>;
/// Unsigned integer of exactly W bits.
template <int W>
using uint = ap_uint<W>;
#else
// C-sim fast path: every datapath integer is a native int64_t. Bit-exact with the
// ap_int build because no expression relies on wrap-around: every product and
// shift is formed in wide_t, and every store is saturated first (tested by
// building the C-sim both ways).
template <int W>
using sint = int64_t;
template <int W>
using uint = int64_t;
#endif

/// Wide signed integer for products, sums and shifts (64 bits).
typedef sint<64> wide_t;

/// Shift right by s with round-half-up; s <= 0 shifts left (exact).
/// \param v raw value
/// \param s shift amount in bits, may be negative
inline wide_t shift_round(wide_t v, int s) {
  if (s <= 0) {
    return v << (-s);
  }
  return (v + (wide_t(1) << (s - 1))) >> s;
}

/// Shift right by s truncating (floor); s <= 0 shifts left.
inline wide_t shift_floor(wide_t v, int s) {
  if (s > 0) {
    return v >> s;
  }
  return v << (-s);
}

/// Clip to the range of a signed W-bit integer.
/// \tparam W target width in bits, 2..63
template <int W>
inline wide_t saturate(wide_t v) {
  const wide_t hi = (wide_t(1) << (W - 1)) - 1;
  const wide_t lo = -(wide_t(1) << (W - 1));
  return v > hi ? hi : (v < lo ? lo : v);
}

/// Clip to the range of an unsigned W-bit integer.
/// \tparam W target width in bits, 1..62
template <int W>
inline wide_t saturate_unsigned(wide_t v) {
  const wide_t hi = (wide_t(1) << W) - 1;
  return v > hi ? hi : (v < 0 ? wide_t(0) : v);
}

/// Narrow a raw value with F_IN fraction bits to fixed<W, W - F_OUT>: round, saturate.
/// \tparam W target width
/// \tparam F_IN fraction bits of v
/// \tparam F_OUT fraction bits of the result
template <int W, int F_IN, int F_OUT>
inline wide_t narrow(wide_t v) {
  return saturate<W>(shift_round(v, F_IN - F_OUT));
}

/// a / d rounded half up, for a positive divisor d (exact, any sign of a).
inline wide_t div_round(wide_t a, wide_t d) {
  const wide_t num = 2 * a + d;
  const wide_t den = 2 * d;
  wide_t q = num / den;  // truncates toward zero
  if (num % den != 0 && num < 0) {
    q -= 1;  // floor for negative numerators
  }
  return q;
}

/// Bits of a positive value: position of the leading one plus one (0 for v = 0).
inline int bit_length(wide_t v) {
#if EDGEMOE_USE_AP_TYPES
  int n = 0;
bit_length_scan:
  for (int b = 0; b < 63; ++b) {
#pragma HLS UNROLL  // a priority encoder, one level of logic per bit
    if ((v >> b) != 0) {
      n = b + 1;
    }
  }
  return n;
#else
  return v == 0 ? 0 : 64 - __builtin_clzll(static_cast<uint64_t>(v));
#endif
}

/// |v|
inline wide_t abs_wide(wide_t v) {
  return v < 0 ? wide_t(-v) : v;
}

}  // namespace edgemoe

#endif  // EDGEMOE_FIXED_H_
