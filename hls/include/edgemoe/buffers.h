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

/// Activations of one image (URAM/BRAM), banked by column for the linear unit.
struct Buffers {
  act_t x[NUM_TOKENS][EMBED_DIM];       ///< residual stream
  act_t h[NUM_TOKENS][EMBED_DIM];       ///< LayerNorm output, then attention output
  act_t wide[NUM_TOKENS][WIDE_COLS];    ///< Q/K/V, MLP hidden, gate logits, expert hidden
  pixel_t pix[NUM_PATCHES][PATCH_DIM];  ///< the image, patch-major
  Routing routing;                      ///< expert queues of the current MoE block
  // expert-major MoE only:
  delta_t delta[NUM_TOKENS][EMBED_DIM];  ///< a chunk's expert outputs, scaled by the gate
  Chunk chunk[2];                        ///< the chunk computing and the one moving
};

}  // namespace edgemoe

#endif  // EDGEMOE_BUFFERS_H_
