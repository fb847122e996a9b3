// The on-chip working set of one image, shared by every stage.
#ifndef EDGEMOE_BUFFERS_H_
#define EDGEMOE_BUFFERS_H_

#include "edgemoe/config.h"

namespace edgemoe {

/// Per-expert queues of one MoE block (patch reordering).
struct Routing {
  int count[NUM_EXPERTS];                  ///< tokens routed to each expert
  int token[NUM_EXPERTS][NUM_TOKENS];      ///< their ids, ascending
  wide_t weight[NUM_EXPERTS][NUM_TOKENS];  ///< their gate weights, raw prob
};

/// One chunk of an expert's queue over a group of parked images (expert-major MoE):
/// up to NUM_TOKENS (image, token) rows, where their x and h are parked.
struct Chunk {
  int rows;                   ///< rows in the chunk (0: none)
  uint64_t x_at[NUM_TOKENS];  ///< byte offset of each row's x (its image's output slot)
  uint64_t h_at[NUM_TOKENS];  ///< byte offset of its h (its image's scratch slot)
  wide_t weight[NUM_TOKENS];  ///< its gate weight, raw prob
};

/// Activations of one image (URAM/BRAM), banked by column for the linear unit; one set
/// per image slot.
struct Buffers {
  act_t x[NUM_TOKENS][EMBED_DIM];     ///< residual stream
  act_t h[NUM_TOKENS][EMBED_DIM];     ///< LayerNorm output, then attention output
  act_t wide[NUM_TOKENS][WIDE_COLS];  ///< Q/K/V, MLP hidden, gate logits, expert hidden
};

/// Buffers only the linear lane uses, one set whichever image it serves: the pixels of
/// the image being embedded and the queues of the block being routed (parked or run
/// before the lane serves another image).
struct LaneBuffers {
  pixel_t pix[NUM_PATCHES][PATCH_DIM];  ///< the image, patch-major
  Routing routing;                      ///< expert queues of the current MoE block
};

inline LaneBuffers& lane_buffers() {
  static LaneBuffers lane;
#pragma HLS ARRAY_PARTITION variable = lane.pix cyclic factor = LIN_IN dim = 2  // LIN_IN per cycle
// routing writes one queue entry per expert per cycle
#pragma HLS ARRAY_PARTITION variable = lane.routing.count complete
#pragma HLS ARRAY_PARTITION variable = lane.routing.token dim = 1 complete
#pragma HLS ARRAY_PARTITION variable = lane.routing.weight dim = 1 complete
  return lane;
}

/// The chunks of the expert-major MoE: the one computing and the one moving.
inline Chunk* expert_chunks() {
  static Chunk chunk[2];
  return chunk;
}

}  // namespace edgemoe

#endif  // EDGEMOE_BUFFERS_H_
