// Park and resume (expert-major MoE): an image that reaches the routing of a MoE block
// leaves its residual stream in its output region, its LN2 output and expert queues in
// its scratch slot, and comes back from there after the group's experts have run.
// Golden: edgemoe.sim.golden.Golden.run (expert-major schedule).
#ifndef EDGEMOE_PARK_H_
#define EDGEMOE_PARK_H_

#include "edgemoe/buffers.h"
#include "edgemoe/config.h"
#include "edgemoe/ddr.h"
#include "edgemoe/linear.h"

namespace edgemoe {

static_assert(SCRATCH_ROW == uint64_t(EMBED_DIM) * 4,
              "parked rows are back to back: a block of rows is one burst");

/// One bus word (word w of row t) of an image being parked: x's ROW_LANES columns to the
/// output region (word x_word), h's to the scratch slot (h_word) and, with RESUME, the
/// next image's parked x (word n_word) into x, after x's word is sent. A word's ROW_LANES
/// columns start at a run-time bank of x and h: the bank rotate networks (banked.h).
template <bool RESUME>
inline void park_row(word_t* output, uint64_t x_word, word_t* scratch, uint64_t h_word,
                     uint64_t n_word, act_t x_row[EMBED_DIM], const act_t h_row[EMBED_DIM], int w) {
#pragma HLS INLINE  // x_row and h_row are run-time rows of the caller's buffers (F14)
  act_t xs[ROW_LANES];
  act_t hs[ROW_LANES];
  act_t ns[ROW_LANES];
#pragma HLS ARRAY_PARTITION variable = xs complete dim = 1  // a bus word's lanes
#pragma HLS ARRAY_PARTITION variable = hs complete dim = 1
#pragma HLS ARRAY_PARTITION variable = ns complete dim = 1
  load_lanes<X_BANKS, ROW_LANES, ROW_LANES>(x_row, w * ROW_LANES, ROW_LANES, xs);
  load_lanes<H_BANKS, ROW_LANES, ROW_LANES>(h_row, w * ROW_LANES, ROW_LANES, hs);
  output[x_word] = pack_i32<ROW_LANES>(xs, ROW_LANES);
  scratch[h_word] = pack_i32<ROW_LANES>(hs, ROW_LANES);
  if (RESUME) {  // a template argument: no conditional m_axi access in the loop
    unpack_word<4, true, ROW_LANES>(output, n_word, ns);
    store_lanes<X_BANKS, ROW_LANES, ROW_LANES>(x_row, w * ROW_LANES, ROW_LANES, ns);
  }
}

/// Park an image's rows: its x rows to its output region (x_at) and its h rows to its
/// scratch slot (h_at) and, when `resume`, load the next image's parked x (next_at) into x;
/// a bus word on each channel per cycle. ONE pipelined loop over every word of every row
/// (F13): three contiguous regions, one burst each, one pipeline fill per image, the row
/// and word as counters. Two loops, the choice made once, so neither has a conditional
/// m_axi access and each is a burst per channel (UG1448 214-232).
inline void park_rows(word_t* output, uint64_t x_at, word_t* scratch, uint64_t h_at, bool resume,
                      uint64_t next_at, act_t x[NUM_TOKENS][EMBED_DIM],
                      const act_t h[NUM_TOKENS][EMBED_DIM]) {
#pragma HLS INLINE  // x and h are buffers of the caller's (F14)
  constexpr int WORDS = NUM_TOKENS * ROW_WORDS;
  count_words<PORT_OUTPUT>(WORDS, true);
  count_words<PORT_SCRATCH>(WORDS, true);
  const uint64_t x0 = x_at / WORD_BYTES;
  const uint64_t h0 = h_at / WORD_BYTES;
  const uint64_t n0 = next_at / WORD_BYTES;
  int t = 0;
  int w = 0;
  if (resume) {
    count_words<PORT_OUTPUT>(WORDS, false);
  park_resume_words:
    for (int i = 0; i < WORDS; ++i) {
#pragma HLS PIPELINE II = 1  // one bus word on each channel per cycle
      // proof: the writes go to this image's output region (x_at) and the reads come from
      // image + 2's (next_at = x_at + 2 * out_stride); a region is NUM_TOKENS * SCRATCH_ROW
      // <= out_stride bytes, so no word is both written and read in this loop
#pragma HLS DEPENDENCE variable = output inter false
      park_row<true>(output, x0 + i, scratch, h0 + i, n0 + i, x[t], h[t], w);
      if (++w == ROW_WORDS) {
        w = 0;
        ++t;
      }
    }
  } else {
  park_row_words:
    for (int i = 0; i < WORDS; ++i) {
#pragma HLS PIPELINE II = 1  // one bus word on each channel per cycle
      park_row<false>(output, x0 + i, scratch, h0 + i, n0 + i, x[t], h[t], w);
      if (++w == ROW_WORDS) {
        w = 0;
        ++t;
      }
    }
  }
}

/// Bring a parked image's x back from its output region: one burst (F13).
inline void resume_image(const word_t* output, uint64_t out_off, Buffers& buf) {
  ddr_read_rows_banked<PORT_OUTPUT, 4, true, X_BANKS, EMBED_DIM, EMBED_DIM>(output, out_off,
                                                                            NUM_TOKENS, buf.x);
}

/// Park the image on chip after the routing of a MoE block: x in its output region (the
/// final tokens overwrite it), h (the experts' input: x itself changes as experts add
/// into it) and its queues in its scratch slot. With `resume`, the next image's parked x
/// comes back into x in the same pass (the read channel is free while parking writes).
inline void park_image(word_t* output, uint64_t out_off, word_t* scratch, uint64_t scratch_slot,
                       bool resume, uint64_t next_off, Buffers& buf, const Routing& rt) {
  park_rows(output, out_off, scratch, scratch_slot + SCRATCH_H, resume, next_off, buf.x, buf.h);
  ddr_write_i32<PORT_SCRATCH>(scratch, scratch_slot + SCRATCH_COUNT, NUM_EXPERTS, rt.count);
park_queues:
  for (int e = 0; e < NUM_EXPERTS; ++e) {
    const int n = rt.count[e];
    if (n > 0) {
      const uint64_t lst = uint64_t(e) * SCRATCH_LIST_STRIDE;
      ddr_write_i32<PORT_SCRATCH>(scratch, scratch_slot + SCRATCH_TOKEN + lst, n, rt.token[e]);
      ddr_write_i32<PORT_SCRATCH>(scratch, scratch_slot + SCRATCH_WEIGHT + lst, n, rt.weight[e]);
    }
  }
}

}  // namespace edgemoe

#endif  // EDGEMOE_PARK_H_
