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

#ifndef __SYNTHESIS__
#include <stdio.h>
#include <stdlib.h>
#endif

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

/// |v|
inline wide_t abs_wide(wide_t v) {
  return v < 0 ? wide_t(-v) : v;
}

// ---- operators at their real widths (hls/README.md, F10) ----
//
// The helpers above work on 64-bit wide_t with any shift amount: Vitis builds what the
// types say (64-bit adders, 64-bit barrel shifters in both directions for an `int`
// amount). Where a value's range and a shift's range are known from the formats, the
// helpers below carry them in the types: a W-bit operand, and a run-time shift whose
// range [LO, HI] is a template argument, so the barrel shifter has Bits<HI - LO> select
// bits and is only as wide as the operand. Every range is proven where it is used (a
// comment next to the call) and checked in the C-sim (check_range).

/// Bits of a compile-time value V >= 0 (0 for 0): the unsigned width that holds 0..V.
template <uint64_t V>
struct Bits {
  static constexpr int value = 1 + Bits<(V >> 1)>::value;
};
template <>
struct Bits<0> {
  static constexpr int value = 0;
};

/// In the C-sim, stop with a message if a value leaves the range its hardware width is
/// sized for (a broken bound, not bad input: the types would have wrapped). No hardware.
inline void check_range(wide_t v, wide_t lo, wide_t hi, const char* what) {
#ifndef __SYNTHESIS__
  if (v < lo || v > hi) {
    fprintf(stderr, "edgemoe: %s = %lld outside [%lld, %lld]\n", what, static_cast<long long>(v),
            static_cast<long long>(lo), static_cast<long long>(hi));
    abort();
  }
#else
  (void)v;
  (void)lo;
  (void)hi;
  (void)what;
#endif
}

/// round(v / 2^s), ties toward +inf, for a W-bit v and a run-time s in [LO, HI], LO >= 1:
/// floor((v + 2^(s-1)) / 2^s) = ((v >> (s - 1)) + 1) >> 1 (nested floors compose), and
/// v >> (s - 1) = (v >> (LO - 1)) >> (s - LO): a constant shift (wiring), a barrel shifter
/// of HI - LO + 1 positions on W - LO + 1 bits, an incrementer and a fixed one-bit shift.
/// Equal to shift_round(v, s) on that range.
template <int W, int LO, int HI>
inline sint<W - LO + 1> shift_round_in(sint<W> v, int s) {
  static_assert(LO >= 1 && HI >= LO && W - LO >= 1, "a right shift within the operand");
  check_range(s, LO, HI, "shift amount");
  const sint<W - LO + 1> pre = v >> (LO - 1);            // constant: wiring
  const uint<Bits<HI - LO>::value + 1> amount = s - LO;  // the shifter's select
  const sint<W - LO + 2> q = sint<W - LO + 2>(pre >> amount) + 1;
  return sint<W - LO + 1>(q >> 1);
}

/// round(v / 2^SH), ties toward +inf, for a W-bit v and a constant SH >= 1: a W + 1-bit
/// incrementer by 2^(SH - 1) and wiring. Equal to shift_round(v, SH).
template <int SH, int W>
inline sint<W - SH + 1> shift_round_const(sint<W> v) {
  static_assert(SH >= 1 && W - SH >= 1, "a right shift within the operand");
  return sint<W - SH + 1>((sint<W + 1>(v) + (wide_t(1) << (SH - 1))) >> SH);
}

/// round(v / 2^SH) for a constant SH >= 0 (SH = 0: v itself), W + 1 bits: what
/// shift_round(v, SH) computes, without its 64-bit adder.
template <int SH>
struct RoundShift {
  template <int W>
  static sint<W + 1> apply(sint<W> v) {
    return sint<W + 1>(shift_round_const<SH, W>(v));
  }
};
template <>
struct RoundShift<0> {
  template <int W>
  static sint<W + 1> apply(sint<W> v) {
    return sint<W + 1>(v);
  }
};

/// Clip a W-bit value to the range of a signed OUT-bit integer: two W-bit comparators and a
/// mux of OUT bits (saturate<OUT> on a W-bit operand).
template <int OUT, int W>
inline sint<OUT> saturate_to(sint<W> v) {
  static_assert(OUT >= 2 && OUT <= W, "a narrowing");
  const sint<W> hi = (wide_t(1) << (OUT - 1)) - 1;
  const sint<W> lo = -(wide_t(1) << (OUT - 1));
  return sint<OUT>(v > hi ? hi : (v < lo ? lo : v));
}

/// floor(n / DIV) for 0 <= n < 2^N and a constant DIV >= 1, by restoring long division:
/// N steps of a Bits<DIV>-bit compare-and-subtract (no divider core, no multiplier; for a
/// small DIV a few LUTs per step). The C-sim's native build divides.
template <int N, uint64_t DIV>
inline uint<N> udiv_const(uint<N> n) {
  static_assert(DIV >= 1 && N >= 1 && N <= 62, "a non-negative N-bit dividend");
  check_range(wide_t(n), 0, (wide_t(1) << N) - 1, "dividend");
#if EDGEMOE_USE_AP_TYPES
  if (DIV == 1) {
    return n;
  }
  constexpr int RB = Bits<DIV>::value;  // the remainder, < DIV, and one bit shifted in
  uint<RB + 1> r = 0;
  uint<N> q = 0;
udiv_const_steps:
  for (int i = N - 1; i >= 0; --i) {
#pragma HLS UNROLL  // one compare-and-subtract per quotient bit
    r = (r << 1) | uint<RB + 1>(n[i]);
    if (r >= DIV) {
      r -= DIV;
      q[i] = 1;
    }
  }
  return q;
#else
  return n / wide_t(DIV);
#endif
}

/// The odd part of a positive compile-time value, and its power of two: V = ODD << TWOS.
template <uint64_t V, bool EVEN = (V % 2 == 0)>
struct OddPart {
  static constexpr uint64_t ODD = V;
  static constexpr int TWOS = 0;
};
template <uint64_t V>
struct OddPart<V, true> {
  static constexpr uint64_t ODD = OddPart<V / 2>::ODD;
  static constexpr int TWOS = 1 + OddPart<V / 2>::TWOS;
};

}  // namespace edgemoe

#endif  // EDGEMOE_FIXED_H_
