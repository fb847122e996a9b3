// The dense steps the linear lane runs for an image: the linear-unit call of each (patch
// embedding, Q/K/V, proj, gate, dense fc1/fc2), LayerNorm over its tokens, loading it (its
// pixels, the token bias) and writing a stage to the output. A step only names its call;
// the lane makes it (one call site). Golden: edgemoe.sim.golden.Golden.run.
#ifndef EDGEMOE_STAGES_H_
#define EDGEMOE_STAGES_H_

#include "edgemoe/buffers.h"
#include "edgemoe/config.h"
#include "edgemoe/ddr.h"
#include "edgemoe/layernorm.h"
#include "edgemoe/linear.h"

namespace edgemoe {

/// Run::stop of a call without a debug stop.
constexpr int NO_STOP = -1;

/// The scalar arguments of one call that every step needs. (The m_axi pointers are
/// passed as plain arguments: HLS traces each one to its port.)
struct Run {
  uint32_t task;
  int stop;  ///< NO_STOP, or debug_stop - 1: 0 the embedding, 1 + STAGES_PER_BLOCK * i + s
             ///< stage s of block i
  uint64_t out_stride;  ///< output bytes per image
  bool decode;          ///< the task's decoder runs after the backbone (a pup task, no stop
                        ///< or a decoder stage's)
  uint32_t dec_stop;    ///< that stage's debug_stop, 0 for the logits
};

/// Write n rows of COLS raw values (row stride STRIDE, banked cyclic BANKS) to the output
/// at a word offset, back to back: one burst, one pipeline fill (ddr_write_rows_banked).
template <int COLS, int STRIDE, int BANKS>
inline void write_rows(word_t* output, uint64_t byte_off, const act_t (*rows)[STRIDE], int n) {
  static_assert((COLS * 4) % WORD_BYTES == 0, "output rows are whole bus words");
  ddr_write_rows_banked<PORT_OUTPUT, BANKS, COLS, STRIDE>(output, byte_off, n, rows);
}

/// h = LayerNorm(x) over every token, with the gamma and beta at g_off, b_off.
inline void layernorm_block(const word_t* bundle, uint64_t g_off, uint64_t b_off, Buffers& buf) {
  param_t ln_g[EMBED_DIM];
  param_t ln_b[EMBED_DIM];
  // LN_LANES elements of gamma and beta per cycle: group c's lane l is column
  // c * LN_LANES + l, bank l of a cyclic-LN_LANES array; the load fills them through the
  // bank rotate network (a bus word starts at a run-time bank)
#pragma HLS ARRAY_PARTITION variable = ln_g cyclic factor = LN_LANES dim = 1
#pragma HLS ARRAY_PARTITION variable = ln_b cyclic factor = LN_LANES dim = 1
  ddr_read_banked<PORT_WEIGHTS, 2, true, LN_LANES>(bundle, g_off, EMBED_DIM, ln_g);
  ddr_read_banked<PORT_WEIGHTS, 2, true, LN_LANES>(bundle, b_off, EMBED_DIM, ln_b);
  layernorm_rows<NUM_TOKENS, EMBED_DIM, LN_LANES, X_BANKS, H_BANKS>(buf.x, ln_g, ln_b, buf.h,
                                                                    NUM_TOKENS);
}

/// Load image b's pixels and stage its token bias in x (the embedding adds to it).
inline void embed_load(const word_t* bundle, const word_t* images, uint32_t b, Buffers& buf,
                       LaneBuffers& lane) {
  static_assert(PATCH_DIM % WORD_BYTES == 0, "a patch is whole bus words");
  // the image's patches, then the token bias: each a contiguous block read as one burst
  // by one pipelined loop (F13)
  ddr_read_rows_banked<PORT_IMAGES, 1, false, PIX_BANKS, PATCH_DIM, PATCH_DIM>(
      images, uint64_t(b) * NUM_PATCHES * PATCH_DIM, NUM_PATCHES, lane.pix);
  ddr_read_rows_banked<PORT_WEIGHTS, 4, true, X_BANKS, EMBED_DIM, EMBED_DIM>(bundle, OFF_TOKEN_BIAS,
                                                                             NUM_TOKENS, buf.x);
embed_cls:
  for (int c = 0; c < EMBED_DIM; ++c) {
#pragma HLS PIPELINE II = 1  // one column a cycle: one bank of x read and written
    buf.x[0][c] = narrow<ACT_W, TOKEN_BIAS_F, ACT_F>(buf.x[0][c]);
  }
}

/// Patch embedding: the image's patches (IN_PIXELS) into x, over the token bias staged there.
inline LinearCall embed_call() {
  LinearCall c = linear_call(IN_PIXELS, OUT_EMBED);
  c.k = PATCH_DIM;
  c.o = EMBED_DIM;
  c.rows = NUM_PATCHES;
  c.w_off = OFF_PATCH_W;
  return c;
}

/// Q, K and V of a block from its LN1 output; the last tiles fetch the first ones of the
/// proj at `next_proj_w` (the proj the lane runs next; NO_TENSOR: none).
inline LinearCall qkv_call(const BlockOffsets& blk, uint64_t next_proj_w) {
  LinearCall c = linear_call(IN_H, OUT_QKV);
  c.k = EMBED_DIM;
  c.o = 3 * EMBED_DIM;
  c.rows = NUM_TOKENS;
  c.w_off = blk.qkv_w;
  c.b_off = blk.qkv_b;
  c.next_w_off = next_proj_w;
  c.next_tiles = linear_tiles(EMBED_DIM, EMBED_DIM);
  return c;
}

/// The attention projection, added into the residual stream.
inline LinearCall proj_call(const BlockOffsets& blk) {
  LinearCall c = linear_call(IN_H, OUT_PROJ);
  c.k = EMBED_DIM;
  c.o = EMBED_DIM;
  c.rows = NUM_TOKENS;
  c.w_off = blk.proj_w;
  c.b_off = blk.proj_b;
  return c;
}

/// The gate logits of a MoE block for one task (no bias).
inline LinearCall gate_call(const BlockOffsets& blk, uint32_t task) {
  LinearCall c = linear_call(IN_H, OUT_GATE);
  c.k = EMBED_DIM;
  c.o = NUM_EXPERTS;
  c.rows = NUM_TOKENS;
  c.w_off = blk.gate_w[task];
  return c;
}

/// Dense fc1 + GELU; the last tiles fetch the first ones of fc2.
inline LinearCall fc1_call(const BlockOffsets& blk) {
  LinearCall c = linear_call(IN_H, OUT_GELU);
  c.k = EMBED_DIM;
  c.o = MLP_HIDDEN;
  c.rows = NUM_TOKENS;
  c.w_off = blk.fc1_w;
  c.b_off = blk.fc1_b;
  c.next_w_off = blk.fc2_w;
  c.next_tiles = linear_tiles(MLP_HIDDEN, EMBED_DIM);
  return c;
}

/// Dense fc2, added into the residual stream.
inline LinearCall fc2_call(const BlockOffsets& blk) {
  LinearCall c = linear_call(IN_WIDE, OUT_RESIDUAL);
  c.k = MLP_HIDDEN;
  c.o = EMBED_DIM;
  c.rows = NUM_TOKENS;
  c.w_off = blk.fc2_w;
  c.b_off = blk.fc2_b;
  return c;
}

}  // namespace edgemoe

#endif  // EDGEMOE_STAGES_H_
