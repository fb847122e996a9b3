// exp2 unit for x <= 0 (docs/numerics.md): x = -(n + f), 2^x = 2^-n * 2^-f, with 2^-f
// read from EXP2_TABLE and linearly interpolated, then shifted by n.
// Golden: edgemoe.sim.units.exp2_parts / exp2.
//
// ROM ports (hls/README.md, F2/F3): an interpolation reads entries k and k + 1 of
// the table, one even and one odd. Each exp2 unit reads its own copy of the table, split
// by parity (exp2_rom_fill: even entries in one memory, odd in another), so every memory gets
// exactly one read per unit per cycle and a pipelined caller reaches II = 1 with as many
// units side by side as it unrolls (UG1448 200-885: a memory's reads per iteration are
// bounded by its ports). A copy is a local array written by an init loop from the
// compile-time table, indexed by the loop counter only: the pattern UG1399 "Implementing
// ROMs" / "ROM Optimization" infers as a ROM (no static: the DATAFLOW-static rule of
// scripts/hls_guard.py, and the example there has none). Even if Vitis kept it a RAM,
// each copy still has one read per cycle and its init loop runs once per call.
#ifndef EDGEMOE_EXP2_H_
#define EDGEMOE_EXP2_H_

#include "edgemoe/config.h"

namespace edgemoe {

/// Points of the 2^-f table: one per 2^-EXP2_LUT_BITS step of f in [0, 1], both ends.
constexpr int EXP2_ENTRIES = (1 << EXP2_LUT_BITS) + 1;
static_assert(sizeof(EXP2_TABLE) == EXP2_ENTRIES * sizeof(int32_t), "table size");
/// Entries of each parity half: the even ones 0, 2, ..., 2^LUT_BITS (one more than the odd).
constexpr int EXP2_HALF = (EXP2_ENTRIES + 1) / 2;
/// Table entries are in [0.5, 1] with EXP2_FRAC fraction bits: EXP2_FRAC + 1 bits unsigned.
typedef uint<EXP2_FRAC + 1> exp2_entry_t;

/// The halves of a split copy of the table: entry k is [EXP2_EVEN][k / 2] (k even) or
/// [EXP2_ODD][k / 2] (k odd); [EXP2_ODD][EXP2_HALF - 1] is unused. A caller declares its
/// copies as `exp2_entry_t roms[COPIES][2][EXP2_HALF]`, partitioned complete on dims 1 and
/// 2: one memory per copy and half.
constexpr int EXP2_EVEN = 0;
constexpr int EXP2_ODD = 1;

/// Fill COPIES split copies of `table` (see the file comment for why this is a ROM).
template <int COPIES>
inline void exp2_rom_fill(const int32_t table[EXP2_ENTRIES],
                          exp2_entry_t roms[COPIES][2][EXP2_HALF]) {
exp2_rom_fill_entries:
  for (int i = 0; i < EXP2_HALF; ++i) {
#pragma HLS PIPELINE II = 1  // EXP2_HALF cycles per call if Vitis keeps the copies as RAMs
  exp2_rom_fill_copies:
    for (int u = 0; u < COPIES; ++u) {
#pragma HLS UNROLL  // every copy's entry i in the same cycle (one write per memory)
      roms[u][EXP2_EVEN][i] = exp2_entry_t(table[2 * i]);
      roms[u][EXP2_ODD][i] = exp2_entry_t(2 * i + 1 < EXP2_ENTRIES ? table[2 * i + 1] : 0);
    }
  }
}

/// 2^x as a mantissa with EXP2_FRAC fraction bits and a right shift n.
/// \tparam FRAC fraction bits of x
/// \tparam AW bits of -x (unsigned): the callers' inputs are differences of two scores,
///         |x| < 2^ATTN_SCORE_W
/// \param x raw input, -2^AW < x <= 0
/// \param mant 2^-f, in (0.5, 1] with EXP2_FRAC fraction bits
/// \param n integer part of -x, AW - FRAC bits
/// \param rom this unit's own split copy of the table (exp2_rom_fill): one read of each half
template <int FRAC, int AW = ATTN_SCORE_W>
inline void exp2_parts(wide_t x, wide_t& mant, wide_t& n, const exp2_entry_t rom[2][EXP2_HALF]) {
  static_assert(FRAC > EXP2_LUT_BITS, "the table index and at least one interpolated bit");
  static_assert(AW > FRAC, "an integer part");
  const int RB = FRAC - EXP2_LUT_BITS;  // bits interpolated between table entries
  check_range(x, -((wide_t(1) << AW) - 1), 0, "exp2 input");
  const uint<AW> a = -x;
  n = a >> FRAC;
  const uint<FRAC> f = a & ((wide_t(1) << FRAC) - 1);
  const int k = static_cast<int>(f >> RB);
  const uint<RB + 1> r = f & ((wide_t(1) << RB) - 1);
  // entries k and k + 1: for k even, even[k / 2] and odd[k / 2]; for k odd, odd[k / 2]
  // and even[k / 2 + 1]: one read of each half
  const bool k_odd = (k & 1) != 0;
  const exp2_entry_t e = rom[EXP2_EVEN][(k + 1) >> 1];
  const exp2_entry_t o = rom[EXP2_ODD][k >> 1];
  const exp2_entry_t t0 = k_odd ? o : e;
  const exp2_entry_t t1 = k_odd ? e : o;
  // table steps fit EXP2_FRAC + 1 bits (entries in [0.5, 1], decreasing), r fits RB bits
  const sint<EXP2_FRAC + 1> step = sint<EXP2_FRAC + 2>(t0) - t1;
  const sint<EXP2_FRAC + RB + 2> prod = step * sint<RB + 1>(r);
  mant = wide_t(sint<EXP2_FRAC + 2>(t0) - shift_round_const<RB, EXP2_FRAC + RB + 2>(prod));
}

/// 2^x narrowed to the prob format (unsigned, PROB_F fraction bits); 0 far below.
/// \tparam FRAC fraction bits of x
/// \param x raw input, -2^AW < x <= 0
/// \param rom as for exp2_parts
template <int FRAC, int AW = ATTN_SCORE_W>
inline wide_t exp2_prob(wide_t x, const exp2_entry_t rom[2][EXP2_HALF]) {
  static_assert(EXP2_FRAC >= PROB_F, "the table is at least as precise as its output");
  constexpr int LO = EXP2_FRAC - PROB_F;  // n = 0
  constexpr int HI = EXP2_FRAC + 2;       // the clamp below
  static_assert(LO >= 1, "a right shift: the table is more precise than prob");
  wide_t mant, n;
  exp2_parts<FRAC, AW>(x, mant, n, rom);
  const uint<AW - FRAC> nn = n;  // the integer part of -x: AW - FRAC bits
  // beyond HI every mantissa rounds to 0
  const uint<AW - FRAC + 1> shift =
      nn > HI - LO ? uint<AW - FRAC + 1>(HI) : uint<AW - FRAC + 1>(nn + LO);
  // mant in (0.5, 1]: EXP2_FRAC + 1 bits, sign included EXP2_FRAC + 2; shift in [LO, HI]
  const sint<EXP2_FRAC + 2> m = mant;
  return saturate_unsigned<PROB_W>(
      wide_t(shift_round_in<EXP2_FRAC + 2, LO, HI>(m, static_cast<int>(shift))));
}

}  // namespace edgemoe

#endif  // EDGEMOE_EXP2_H_
