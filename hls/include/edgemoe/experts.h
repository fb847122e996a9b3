// The expert schedules of a MoE block (docs/design.md), as the linear lane steps through
// them: image-major (one image's used experts in ascending index, each over its whole
// queue) and expert-major (the queued tokens of a parked group, expert by expert, in
// expert chunks of up to NUM_TOKENS rows whose h and x move while the unit computes). Each step
// names the linear-unit call it makes; the lane makes it (one call site).
// Golden: edgemoe.sim.golden.Golden.block and the expert-major schedule of Golden.run.
#ifndef EDGEMOE_EXPERTS_H_
#define EDGEMOE_EXPERTS_H_

#include "edgemoe/buffers.h"
#include "edgemoe/config.h"
#include "edgemoe/ddr.h"
#include "edgemoe/linear.h"

namespace edgemoe {

/// The first expert after e that receives tokens (count > 0), or NUM_EXPERTS.
inline int next_used(const int count[NUM_EXPERTS], int e) {
  int next = e + 1;
expert_next:
  while (next < NUM_EXPERTS && count[next] == 0) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = NUM_EXPERTS
    ++next;
  }
  return next;
}

/// The first expert that receives tokens, or NUM_EXPERTS.
inline int first_used(const int count[NUM_EXPERTS]) {
  return count[0] > 0 ? 0 : next_used(count, 0);
}

/// Where expert e of a MoE block starts in the bundle; NO_TENSOR (no call) past the last.
inline uint64_t expert_base(const BlockOffsets& blk, int e) {
  return e < NUM_EXPERTS ? blk.experts + uint64_t(e) * EXPERT_STRIDE : NO_TENSOR;
}

/// Expert e's fc1 + GELU over `rows` rows read from `in`; its last tiles fetch the first
/// ones of its fc2. What both schedules share; each sets the rest.
inline LinearCall expert_fc1(const BlockOffsets& blk, int e, int rows, LinearInput in) {
  const uint64_t base = expert_base(blk, e);
  LinearCall c = linear_call(in, OUT_GELU);
  c.k = EMBED_DIM;
  c.o = EXPERT_HIDDEN;
  c.rows = rows;
  c.w_off = base;
  c.b_off = base + EXPERT_FC1_B;
  c.next_w_off = base + EXPERT_FC2_W;
  c.next_tiles = linear_tiles(EXPERT_HIDDEN, EMBED_DIM);
  return c;
}

/// Expert e's fc2 over `rows` rows of wide into epilogue `out`; its last tiles fetch the
/// first ones of expert `next`'s fc1 (none past the last). What both schedules share.
inline LinearCall expert_fc2(const BlockOffsets& blk, int e, int rows, LinearOutput out, int next) {
  const uint64_t base = expert_base(blk, e);
  LinearCall c = linear_call(IN_WIDE, out);
  c.k = EXPERT_HIDDEN;
  c.o = EMBED_DIM;
  c.rows = rows;
  c.w_off = base + EXPERT_FC2_W;
  c.b_off = base + EXPERT_FC2_B;
  c.next_w_off = expert_base(blk, next);
  c.next_tiles = linear_tiles(EMBED_DIM, EXPERT_HIDDEN);
  return c;
}

/// Image-major expert e: fc1 + GELU over the h rows its queue lists.
inline LinearCall expert_fc1_call(const BlockOffsets& blk, int e, int rows) {
  LinearCall c = expert_fc1(blk, e, rows, IN_H_GATHER);
  c.expert = e;
  return c;
}

/// Image-major expert e: fc2, scaled by the gate weight into its tokens' x.
inline LinearCall expert_fc2_call(const BlockOffsets& blk, int e, int rows, int next) {
  LinearCall c = expert_fc2(blk, e, rows, OUT_EXPERT, next);
  c.expert = e;
  return c;
}

/// Expert-major: fc1 + GELU of expert chunk `chunk` (its h gathered into h), merging
/// the expert chunk before it into its tokens' parked x meanwhile (unless `merge` is
/// false: the first).
inline LinearCall expert_chunk_fc1_call(const BlockOffsets& blk, int e, int rows, bool merge,
                                        int chunk) {
  LinearCall c = expert_fc1(blk, e, rows, IN_H);
  c.side = merge ? SIDE_MERGE : SIDE_NONE;
  c.side_expert_chunk = chunk ^ 1;
  return c;
}

/// Expert-major: fc2 of expert chunk `chunk`, its gate-scaled outputs kept in x
/// (OUT_DELTA), gathering the next expert chunk's h meanwhile.
inline LinearCall expert_chunk_fc2_call(const BlockOffsets& blk, int e, int rows, int chunk,
                                        int next) {
  LinearCall c = expert_fc2(blk, e, rows, OUT_DELTA, next);
  c.expert = chunk;
  c.side = SIDE_GATHER;
  c.side_expert_chunk = chunk ^ 1;
  return c;
}

/// Where the walk over a MoE block's queued tokens (expert, then image, then queue
/// entry) has got to.
struct QueueWalk {
  int e;        ///< expert (NUM_EXPERTS: done)
  int b;        ///< image of the group
  bool loaded;  ///< that image's queue for e has been read
  int n;        ///< its length (once loaded)
  int j;        ///< its next entry
  int tok[NUM_TOKENS];
  prob_t weight[NUM_TOKENS];
};

/// Start the walk over a parked group's queues at expert 0, image 0.
inline void start_walk(QueueWalk& w) {
  w.e = 0;
  w.b = 0;
  w.loaded = false;
  w.n = 0;
  w.j = 0;
}

/// The next expert chunk of the walk: queued tokens of one expert, image by image, until
/// NUM_TOKENS rows or the expert's last entry.
/// \return the expert chunk's expert, NUM_EXPERTS when the walk is done (ch.rows == 0)
inline int next_expert_chunk(const word_t* scratch, uint64_t out_base, uint64_t out_stride,
                             int group, const int count[MAX_GROUP][NUM_EXPERTS], QueueWalk& w,
                             ExpertChunk& ch) {
#pragma HLS INLINE  // ch is a run-time element of LaneBuffers::expert_chunk (UG1448 200-197)
  int expert = NUM_EXPERTS;
  ch.rows = 0;
expert_chunk_fill:
  while (w.e < NUM_EXPERTS && ch.rows < NUM_TOKENS) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_TOKENS
    if (!w.loaded) {  // read image b's queue for expert e
      w.loaded = true;
      w.n = count[w.b][w.e];
      w.j = 0;
      if (w.n > 0) {
        const uint64_t scratch_slot = uint64_t(w.b) * SCRATCH_SLOT;
        const uint64_t lst = uint64_t(w.e) * SCRATCH_LIST_STRIDE;
        ddr_read<PORT_SCRATCH, 4, true>(scratch, scratch_slot + SCRATCH_TOKEN + lst, w.n, w.tok);
        ddr_read<PORT_SCRATCH, 4, true>(scratch, scratch_slot + SCRATCH_WEIGHT + lst, w.n,
                                        w.weight);
      }
    }
    if (w.j < w.n) {
      const uint64_t row = uint64_t(w.tok[w.j]) * SCRATCH_ROW;
      // image b's region (a decoding call's is longer than its tokens: Run::out_stride);
      // b < MAX_GROUP, a narrow multiply
      ch.x_at[ch.rows] = out_base + uint64_t(uint<8>(w.b)) * out_stride + row;
      ch.h_at[ch.rows] = uint64_t(w.b) * SCRATCH_SLOT + SCRATCH_H + row;
      ch.weight[ch.rows] = w.weight[w.j];
      ++ch.rows;
      ++w.j;
      expert = w.e;
      continue;
    }
    // this queue is done: the next image's, or the next expert's first (a fresh expert chunk)
    w.loaded = false;
    if (++w.b == group) {
      w.b = 0;
      ++w.e;
      if (ch.rows > 0) {
        break;
      }
    }
  }
  return expert;
}

}  // namespace edgemoe

#endif  // EDGEMOE_EXPERTS_H_
