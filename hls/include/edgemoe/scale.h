// Per-tensor binary points of the linear unit (docs/numerics.md): the profile gives
// each weight and bias format its width only (fixed<W,*>); export chooses every tensor's
// binary point and the bundle carries it in its scale table, one 16-bit word per weight
// tensor: its fraction bits | its addend's (bias, or the per-token bias of the patch
// embedding) << 8. So one build of the kernel serves any checkpoint of its config. The
// epilogue of a call aligns the addend to the accumulator by a left shift and rounds the
// sum once, by a right shift, to the output's fraction bits: both shifts are per call.
// Golden: edgemoe.sim.golden.linear; the table: edgemoe.host.export.bundle.scale_entries.
#ifndef EDGEMOE_SCALE_H_
#define EDGEMOE_SCALE_H_

#include "edgemoe/config.h"
#include "edgemoe/ddr.h"

namespace edgemoe {

/// The binary points of one call's tensors, from its scale-table word.
struct TensorScale {
  uint<8> w_frac;  ///< fraction bits of the weight tensor
  uint<8> b_frac;  ///< fraction bits of its addend (bias / token bias); 0: no addend
};

/// A shift amount of the epilogue: 0..63 bits (export keeps every shift <= 62).
typedef uint<6> shift_t;

/// The epilogue's two shifts of one call.
struct LinearShift {
  shift_t addend;  ///< left: the addend's fraction bits up to the accumulator's
  shift_t out;     ///< right: the accumulator's fraction bits down to the output's
};

/// The bundle's scale table, on chip for the whole kernel call (NUM_SCALES 16-bit words:
/// LUTRAM or one BRAM18). Read once, after the header check; only the linear lane reads it.
struct ScaleTable {
  uint<16> word[NUM_SCALES];
};

/// Read the scale table from the bundle: one burst of its bus words into a small local
/// buffer, then one 16-bit entry a cycle into the table (an unpartitioned LUTRAM / BRAM18
/// takes one write a cycle; storing a bus word's WORD_BYTES / 2 entries a cycle would need
/// II = WORD_BYTES / 4 on its two ports, UG1448 200-885). About NUM_SCALES + NUM_SCALES /
/// 8 cycles plus one m_axi latency, once per kernel call.
/// \param bundle weight bundle (m_axi)
/// \param table where it goes
inline void load_scales(const word_t* bundle, ScaleTable& table) {
  constexpr int PER_WORD = WORD_BYTES / 2;
  constexpr int WORDS = (NUM_SCALES + PER_WORD - 1) / PER_WORD;
  static_assert(OFF_SCALES % WORD_BYTES == 0, "the table starts on a bus word");
  constexpr uint64_t FIRST = OFF_SCALES / WORD_BYTES;
  count_words<PORT_WEIGHTS>(WORDS, false);
  word_t words[WORDS];
load_scales_words:
  for (int w = 0; w < WORDS; ++w) {
#pragma HLS PIPELINE II = 1  // a bus word per cycle: one burst
    words[w] = bundle[FIRST + w];
  }
load_scales_entries:
  for (int e = 0; e < NUM_SCALES; ++e) {
#pragma HLS PIPELINE II = 1  // one entry written per cycle, one word read
    uint<16> vals[PER_WORD];
#pragma HLS ARRAY_PARTITION variable = vals complete dim = 1  // the word's lanes
    unpack_word<2, false, PER_WORD>(words, uint64_t(e / PER_WORD), vals);
    table.word[e] = vals[e % PER_WORD];  // bank: registers (PER_WORD a power of two: a mask)
  }
}

/// The binary points of scale-table row `at` (SCALE_PATCH, SCALE_AT[block].*, expert_scale_at).
inline TensorScale scale_of(const ScaleTable& table, int at) {
  const uint<16> w = table.word[at];
  TensorScale s;
  s.w_frac = uint<8>(w & 0xFF);
  s.b_frac = uint<8>((w >> 8) & 0xFF);
  return s;
}

/// The scale-table row of expert e's fc1 (fc2 = false) or fc2 in MoE block `block`.
inline int expert_scale_at(int block, int e, bool fc2) {
  return SCALE_AT[block].experts + 2 * e + (fc2 ? 1 : 0);
}

/// The shifts of a call with inputs of in_frac and outputs of out_frac fraction bits.
/// \param s the call's binary points
/// \param in_frac fraction bits of its input rows (pixels or activations)
/// \param out_frac fraction bits of what it narrows to (act, attn_qkv, attn_score)
inline LinearShift linear_shift(TensorScale s, int in_frac, int out_frac) {
  const int acc_frac = in_frac + int(s.w_frac);
  LinearShift sh;
  sh.addend = shift_t(acc_frac - int(s.b_frac));
  sh.out = shift_t(acc_frac - out_frac);
  return sh;
}

/// round(v / 2^s), ties toward +inf, for a shift 0 <= s <= 62 known only at run time:
/// for s >= 1, ((v >> (s - 1)) + 1) >> 1 equals floor((v + 2^(s-1)) / 2^s)
/// (edgemoe.host.contracts.fixedpoint.rshift_round) without forming 2^(s-1): one barrel shifter,
/// an incrementer and a fixed one-bit shift -- LUTs, no DSP. The amounts are unsigned
/// (shift_t): ap_int's shift operators (UG1399 "Class Methods and Operators") take a
/// signed amount as a shift either way (the open ap_int_base.h: a negative amount turns
/// >> into <<), an unsigned one only the way written; 6 bits bound the shifter's depth.
inline wide_t scale_round(wide_t v, shift_t s) {
  return s == 0 ? v : wide_t(((v >> shift_t(s - 1)) + 1) >> 1);
}

}  // namespace edgemoe

#endif  // EDGEMOE_SCALE_H_
