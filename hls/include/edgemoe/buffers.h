// The on-chip working sets: one image's activations (one of the two buffer sets), and what
// only the linear lane uses. Every one of them is a variable of the top function passed
// down by reference, never a function static: a DATAFLOW process touches only the
// buffers it is handed (UG1448 214-169; UG1399 "Dataflow": single producer, single
// consumer).
#ifndef EDGEMOE_BUFFERS_H_
#define EDGEMOE_BUFFERS_H_

#include "edgemoe/banked.h"
#include "edgemoe/config.h"

namespace edgemoe {

/// Banks of the column-banked buffers (cyclic, dim 2; UG1399 "pragma HLS array_partition"):
/// x is written LIN_OUT columns per cycle by the linear epilogue, h and wide are read
/// LIN_IN per cycle by the MACs, the pixels too. Every other access at a run-time column
/// goes through store_lanes / load_lanes (banked.h).
constexpr int X_BANKS = LIN_OUT;
constexpr int H_BANKS = LIN_IN;
constexpr int WIDE_BANKS = LIN_IN;
constexpr int PIX_BANKS = LIN_IN;
static_assert(WIDE_COLS < (1 << BANK_COL_BITS) && PATCH_DIM < (1 << BANK_COL_BITS) &&
                  OUT_TILES_MAX * LIN_OUT < (1 << BANK_COL_BITS),
              "every banked row's columns fit the bank walk's narrow division (banked.h)");

/// Per-expert queues of one MoE block (patch reordering).
struct Routing {
  int count[NUM_EXPERTS];                  ///< tokens routed to each expert
  int token[NUM_EXPERTS][NUM_TOKENS];      ///< their ids, ascending
  prob_t weight[NUM_EXPERTS][NUM_TOKENS];  ///< their gate weights, raw prob (<= 1.0)
};

/// One expert chunk: the part of an expert's queue over a group of parked images that one
/// expert call takes (expert-major MoE): up to NUM_TOKENS (image, token) rows, where their x and h
/// are parked.
struct ExpertChunk {
  int rows;                   ///< rows in the expert chunk (0: none)
  uint64_t x_at[NUM_TOKENS];  ///< byte offset of each row's x (its image's output region)
  uint64_t h_at[NUM_TOKENS];  ///< byte offset of its h (its image's scratch slot)
  prob_t weight[NUM_TOKENS];  ///< its gate weight, raw prob
};

/// Activations of one image (URAM/BRAM), banked by column for the linear unit: one of the
/// two on-chip buffer sets.
struct Buffers {
  /// residual stream; each of its X_BANKS banks is NUM_TOKENS * EMBED_DIM / X_BANKS deep
  /// (1,032 for the default build: 8 over a BRAM36's 1K x 36, so 2 BRAM36 a bank; keeping
  /// the class token's row apart would make it 1,024: hls/README.md, second review F19)
  act_t x[NUM_TOKENS][EMBED_DIM];
  act_t h[NUM_TOKENS][EMBED_DIM];     ///< LayerNorm output, then attention output
  act_t wide[NUM_TOKENS][WIDE_COLS];  ///< Q/K/V, MLP hidden, gate logits, expert hidden
};

/// Buffers only the linear lane uses, one set whichever image it serves: the pixels of
/// the image being embedded, the queues of the block being routed (parked or run before
/// the lane serves another image) and the expert chunks (the one computing, the
/// one moving).
struct LaneBuffers {
  pixel_t pix[NUM_PATCHES][PATCH_DIM];  ///< the image, patch-major
  Routing routing;                      ///< expert queues of the current MoE block
  ExpertChunk expert_chunk[2];          ///< the expert chunk computing, the one moving
};

}  // namespace edgemoe

#endif  // EDGEMOE_BUFFERS_H_
