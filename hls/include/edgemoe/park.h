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

/// Park one token of an image: its x row to the image's output region and its h row to its
/// scratch slot, and, when `resume`, load the same row of the next image's parked x into
/// x (each word is sent before it is replaced); a bus word on each channel per cycle.
/// A word's ROW_LANES columns start at a run-time bank of x and h: they go through the
/// bank rotate networks (banked.h). The read is unconditional in its loop (two loops, the
/// choice made once per row), so each loop is a burst per channel (UG1448 214-232).
inline void park_row(word_t* output, uint64_t x_at, word_t* scratch, uint64_t h_at, bool resume,
                     uint64_t next_at, act_t x[EMBED_DIM], const act_t h[EMBED_DIM]) {
  act_t xs[ROW_LANES];
  act_t hs[ROW_LANES];
  act_t ns[ROW_LANES];
#pragma HLS ARRAY_PARTITION variable = xs complete dim = 1  // a bus word's lanes
#pragma HLS ARRAY_PARTITION variable = hs complete dim = 1
#pragma HLS ARRAY_PARTITION variable = ns complete dim = 1
  count_words<PORT_OUTPUT>(ROW_WORDS, true);
  count_words<PORT_SCRATCH>(ROW_WORDS, true);
  if (resume) {
    count_words<PORT_OUTPUT>(ROW_WORDS, false);
  park_resume_words:
    for (int w = 0; w < ROW_WORDS; ++w) {
#pragma HLS PIPELINE II = 1                           // one bus word on each channel per cycle
#pragma HLS DEPENDENCE variable = output inter false  // x_at and next_at are distinct rows
      load_lanes<X_BANKS, ROW_LANES, ROW_LANES>(x, w * ROW_LANES, ROW_LANES, xs);
      load_lanes<H_BANKS, ROW_LANES, ROW_LANES>(h, w * ROW_LANES, ROW_LANES, hs);
      output[x_at / WORD_BYTES + w] = pack_i32<ROW_LANES>(xs, ROW_LANES);
      scratch[h_at / WORD_BYTES + w] = pack_i32<ROW_LANES>(hs, ROW_LANES);
      unpack_word<4, true, ROW_LANES>(output, next_at / WORD_BYTES + w, ns);
      store_lanes<X_BANKS, ROW_LANES, ROW_LANES>(x, w * ROW_LANES, ROW_LANES, ns);
    }
  } else {
  park_row_words:
    for (int w = 0; w < ROW_WORDS; ++w) {
#pragma HLS PIPELINE II = 1  // one bus word on each channel per cycle
      load_lanes<X_BANKS, ROW_LANES, ROW_LANES>(x, w * ROW_LANES, ROW_LANES, xs);
      load_lanes<H_BANKS, ROW_LANES, ROW_LANES>(h, w * ROW_LANES, ROW_LANES, hs);
      output[x_at / WORD_BYTES + w] = pack_i32<ROW_LANES>(xs, ROW_LANES);
      scratch[h_at / WORD_BYTES + w] = pack_i32<ROW_LANES>(hs, ROW_LANES);
    }
  }
}

/// Bring a parked image's x back from its output region.
inline void resume_image(const word_t* output, uint64_t out_off, Buffers& buf) {
resume_tokens:
  for (int t = 0; t < NUM_TOKENS; ++t) {
    ddr_read_banked<PORT_OUTPUT, 4, true, X_BANKS>(output, out_off + uint64_t(t) * SCRATCH_ROW,
                                                   EMBED_DIM, buf.x[t]);
  }
}

/// Park the image on chip after the routing of a MoE block: x in its output region (the
/// final tokens overwrite it), h (the experts' input: x itself changes as experts add
/// into it) and its queues in its scratch slot. With `resume`, the next image's parked x
/// comes back into x in the same pass (the read channel is free while parking writes).
inline void park_image(word_t* output, uint64_t out_off, word_t* scratch, uint64_t scratch_slot,
                       bool resume, uint64_t next_off, Buffers& buf, const Routing& rt) {
park_tokens:
  for (int t = 0; t < NUM_TOKENS; ++t) {
    const uint64_t row = uint64_t(t) * SCRATCH_ROW;
    park_row(output, out_off + row, scratch, scratch_slot + SCRATCH_H + row, resume, next_off + row,
             buf.x[t], buf.h[t]);
  }
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
