// The accelerator: the whole M3ViT backbone for num_images images of one task.
//
// Per image: patch embedding -> DEPTH blocks (LN1, QKV, attention, proj + residual,
// LN2, dense MLP or MoE + residual) -> the tokens before the final norm, written
// to the output buffer. Activations stay on chip; the weight bundle streams from
// DDR. debug_stop ends every image after one stage and leaves that stage in the
// output buffer.
//
// Two schedules, one result (bit for bit):
// - image-major (one image, or any debug stop): each image runs every block in turn;
//   every tensor and every used expert crosses DDR once per image.
// - expert-major (num_images > 1): images run in groups of up to MAX_BATCH. Each image
//   runs on chip up to the routing of the next MoE block and parks its residual
//   stream in its output slot, its LN2 output and expert queues in its scratch slot
//   (two ports side by side); then the experts run in ascending index over the queued
//   tokens of the whole group, NUM_TOKENS at a time, so an expert's weights cross DDR
//   once per NUM_TOKENS queued tokens instead of once per image. The tokens' h and x
//   move while the linear unit computes; a token still receives its experts in
//   ascending order.
//
// Module hierarchy (hls/README.md): edgemoe_top -> run_images -> lane_step (ONE
// instance, two call sites) -> lanes (DATAFLOW) -> attention_lane | linear_lane; the
// linear lane is a sequencer whose one loop holds the only call of linear_unit (ONE
// engine by construction) and of every other unit of the lane.
// Golden: edgemoe.sim.golden.Golden.run. Contract: bit-exact.
#include "edgemoe/edgemoe.h"

using namespace edgemoe;  // NOLINT: this file is the kernel

namespace {

/// Status of the header and arguments: anything but STATUS_OK leaves the output untouched.
uint32_t check_call(const word_t* bundle, uint32_t task, uint32_t num_images, uint32_t debug_stop) {
  // Header words (edgemoe.host.bundle): magic, version | profile << 16, config hash,
  // header bytes, payload bytes (2 words), payload CRC32, tiling.
  uint32_t hdr[8];
  ddr_read<PORT_WEIGHTS, 4, false>(bundle, 0, 8, hdr);
  const uint32_t magic = hdr[0];
  const uint32_t version = hdr[1] & 0xFFFFu;
  const uint32_t config_hash = hdr[2];
  const uint32_t header_bytes = hdr[3];
  const uint32_t tiling = hdr[7];
  if (magic != BUNDLE_MAGIC) {
    return STATUS_BAD_MAGIC;
  }
  if (version != BUNDLE_VERSION || header_bytes != HEADER_BYTES) {
    return STATUS_BAD_VERSION;
  }
  if (config_hash != CONFIG_HASH) {
    return STATUS_BAD_CONFIG_HASH;
  }
  if (tiling != TILING_WORD) {
    return STATUS_BAD_TILING;
  }
  if (task >= uint32_t(NUM_TASKS)) {
    return STATUS_BAD_TASK;
  }
  if (num_images == 0 || num_images > MAX_IMAGES) {
    return STATUS_BAD_IMAGE_COUNT;
  }
  if (debug_stop > uint32_t(1 + DEPTH * STAGES_PER_BLOCK)) {
    return STATUS_BAD_DEBUG_STOP;
  }
  if (debug_stop >= 2) {
    const int s = int(debug_stop) - 2;
    if (s % STAGES_PER_BLOCK == STAGE_GATE && !IS_MOE[s / STAGES_PER_BLOCK]) {
      return STATUS_BAD_DEBUG_STOP;
    }
  }
  return STATUS_OK;
}

/// Write ROWS rows of COLS raw values (row stride STRIDE, banked cyclic BANKS) to the
/// output at a word offset.
template <int COLS, int STRIDE, int BANKS>
void write_rows(word_t* output, uint64_t byte_off, const act_t (*rows)[STRIDE], int n) {
  static_assert((COLS * 4) % WORD_BYTES == 0, "output rows are whole bus words");
write_rows_loop:
  for (int t = 0; t < n; ++t) {
    ddr_write_banked<PORT_OUTPUT, BANKS>(output, byte_off + uint64_t(t) * COLS * 4, COLS, rows[t]);
  }
}

/// Park one token of an image: its x row to the image's output slot and its h row to its
/// scratch slot, and, when `resume`, load the same row of the next image's parked x into
/// x (each word is sent before it is replaced); a bus word on each channel per cycle.
/// A word's ROW_LANES columns start at a run-time bank of x and h: they go through the
/// bank rotate networks (banked.h). The read is unconditional in its loop (two loops, the
/// choice made once per row), so each loop is a burst per channel (UG1448 214-232).
void park_row(word_t* output, uint64_t x_at, word_t* scratch, uint64_t h_at, bool resume,
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

/// The scalar arguments of one call that every stage needs. (The m_axi pointers are
/// passed as plain arguments: HLS traces each one to its port.)
struct Run {
  uint32_t task;
  int stop;             ///< -1: none; 0: embed; 1 + 7*i + s: block i stage s
  uint64_t out_stride;  ///< output bytes per image
};

/// The first expert after e that receives tokens (count > 0), or NUM_EXPERTS.
int next_used(const int count[NUM_EXPERTS], int e) {
  int next = e + 1;
expert_next:
  while (next < NUM_EXPERTS && count[next] == 0) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = NUM_EXPERTS
    ++next;
  }
  return next;
}

/// Where expert e of a MoE block starts in the bundle; 0 (no call) past the last.
uint64_t expert_base(const BlockOffsets& blk, int e) {
  return e < NUM_EXPERTS ? blk.experts + uint64_t(e) * EXPERT_STRIDE : 0;
}

/// Bring a parked image's x back from its output slot.
void resume_image(const word_t* output, uint64_t out_off, Buffers& buf) {
resume_tokens:
  for (int t = 0; t < NUM_TOKENS; ++t) {
    ddr_read_banked<PORT_OUTPUT, 4, true, X_BANKS>(output, out_off + uint64_t(t) * SCRATCH_ROW,
                                                   EMBED_DIM, buf.x[t]);
  }
}

/// Park the image on chip after the routing of a MoE block: x in its output slot (the
/// final tokens overwrite it), h (the experts' input: x itself changes as experts add
/// into it) and its queues in its scratch slot. With `resume`, the next image's parked x
/// comes back into x in the same pass (the read channel is free while parking writes).
void park_image(word_t* output, uint64_t out_off, word_t* scratch, uint64_t slot, bool resume,
                uint64_t next_off, Buffers& buf, const Routing& rt) {
park_tokens:
  for (int t = 0; t < NUM_TOKENS; ++t) {
    const uint64_t row = uint64_t(t) * SCRATCH_ROW;
    park_row(output, out_off + row, scratch, slot + SCRATCH_H + row, resume, next_off + row,
             buf.x[t], buf.h[t]);
  }
  ddr_write_i32<PORT_SCRATCH>(scratch, slot + SCRATCH_COUNT, NUM_EXPERTS, rt.count);
park_queues:
  for (int e = 0; e < NUM_EXPERTS; ++e) {
    const int n = rt.count[e];
    if (n > 0) {
      const uint64_t lst = uint64_t(e) * SCRATCH_LIST_STRIDE;
      ddr_write_i32<PORT_SCRATCH>(scratch, slot + SCRATCH_TOKEN + lst, n, rt.token[e]);
      ddr_write_i32<PORT_SCRATCH>(scratch, slot + SCRATCH_WEIGHT + lst, n, rt.weight[e]);
    }
  }
}

/// h = LayerNorm(x) over every token, with the gamma and beta at g_off, b_off.
void layernorm_block(const word_t* bundle, uint64_t g_off, uint64_t b_off, Buffers& buf) {
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
void embed_load(const word_t* bundle, const word_t* images, uint32_t b, Buffers& buf,
                LaneBuffers& lane) {
  static_assert(PATCH_DIM % WORD_BYTES == 0, "a patch is whole bus words");
embed_pixels:
  for (int p = 0; p < NUM_PATCHES; ++p) {
    ddr_read_banked<PORT_IMAGES, 1, false, PIX_BANKS>(
        images, (uint64_t(b) * NUM_PATCHES + p) * PATCH_DIM, PATCH_DIM, lane.pix[p]);
  }
embed_token_bias:
  for (int t = 0; t < NUM_TOKENS; ++t) {
    ddr_read_banked<PORT_WEIGHTS, 4, true, X_BANKS>(
        bundle, OFF_TOKEN_BIAS + uint64_t(t) * EMBED_DIM * 4, EMBED_DIM, buf.x[t]);
  }
embed_cls:
  for (int c = 0; c < EMBED_DIM; ++c) {
    buf.x[0][c] = narrow<ACT_W, TOKEN_BIAS_F, ACT_F>(buf.x[0][c]);
  }
}

// ---- Two images in flight -------------------------------------------------------------
// The images of a call run on two buffer sets ("slots"), in steps: each step runs the
// attention of one slot's image beside the linear lane's turn for the other's image
// (everything but attention: LayerNorm, the linear unit, routing, parking, loading).
// Turns alternate, so while one image attends, the other's proj, MLP and next Q, K, V
// run on the linear unit. Every image still runs its stages in order on its own
// buffers; only the two images' stages interleave.

/// Where an image slot is.
enum SlotState {
  SLOT_IDLE,  ///< no image left for this slot
  SLOT_LOAD,  ///< its next image is to be loaded (embedded, or its parked x read back)
  SLOT_ATTN,  ///< the attention of `block` comes next (the attention lane)
  SLOT_TAIL,  ///< the rest of `block` comes next (the linear lane)
};

/// One image slot.
struct Slot {
  SlotState state;
  uint32_t image;  ///< the image of the call in the slot
  int block;       ///< its block
  bool on_chip;    ///< SLOT_LOAD: its x came back while the image before it parked
};

/// The part of a call the slots run: images [first, last) from block `from` (from the
/// pixels when 0, else from their parked x) up to the routing of a MoE block when
/// `park` (expert-major), else to the end.
struct Segment {
  uint32_t first;
  uint32_t last;
  int from;
  bool park;
};

/// The proj whose first tiles a linear turn's last qkv fetches ahead: block
/// `next_proj`'s, this slot's own block's (-1) or none (-2); see lane_step.
uint64_t proj_ahead(int next_proj, int own) {
  return next_proj == -2 ? 0 : BLOCK[next_proj < 0 ? own : next_proj].proj_w;
}

/// The slot's next image: every second image of the segment.
void next_image(const Segment& seg, bool on_chip, Slot& s) {
  s.image += 2;
  s.on_chip = on_chip;
  s.state = s.image < seg.last ? SLOT_LOAD : SLOT_IDLE;
}

/// Where the walk over a MoE block's queued tokens (expert, then image, then queue
/// entry) has got to.
struct QueueWalk {
  int e;  ///< expert (NUM_EXPERTS: done)
  int b;  ///< image of the group
  int n;  ///< length of that image's queue for e, -1 until read
  int j;  ///< its next entry
  int tok[NUM_TOKENS];
  prob_t weight[NUM_TOKENS];
};

/// The next chunk of the walk: queued tokens of one expert, image by image, until
/// NUM_TOKENS rows or the expert's last entry.
/// \return the chunk's expert, NUM_EXPERTS when the walk is done (ch.rows == 0)
int next_chunk(const word_t* scratch, uint64_t out_base, int group,
               const int count[MAX_BATCH][NUM_EXPERTS], QueueWalk& w, Chunk& ch) {
  int expert = NUM_EXPERTS;
  ch.rows = 0;
chunk_fill:
  while (w.e < NUM_EXPERTS && ch.rows < NUM_TOKENS) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_TOKENS
    if (w.n < 0) {  // read image b's queue for expert e
      w.n = count[w.b][w.e];
      w.j = 0;
      if (w.n > 0) {
        const uint64_t slot = uint64_t(w.b) * SCRATCH_SLOT;
        const uint64_t lst = uint64_t(w.e) * SCRATCH_LIST_STRIDE;
        ddr_read<PORT_SCRATCH, 4, true>(scratch, slot + SCRATCH_TOKEN + lst, w.n, w.tok);
        ddr_read<PORT_SCRATCH, 4, true>(scratch, slot + SCRATCH_WEIGHT + lst, w.n, w.weight);
      }
    }
    if (w.j < w.n) {
      const uint64_t row = uint64_t(w.tok[w.j]) * SCRATCH_ROW;
      ch.x_at[ch.rows] = out_base + uint64_t(w.b) * NUM_TOKENS * SCRATCH_ROW + row;
      ch.h_at[ch.rows] = uint64_t(w.b) * SCRATCH_SLOT + SCRATCH_H + row;
      ch.weight[ch.rows] = w.weight[w.j];
      ++ch.rows;
      ++w.j;
      expert = w.e;
      continue;
    }
    // this queue is done: the next image's, or the next expert's first (a fresh chunk)
    w.n = -1;
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

/// The linear lane's steps (its program counter): each iteration of its loop runs one.
enum LanePc {
  PC_END,          ///< the turn is over
  PC_TAIL,         ///< block s.block after its attention: proj (or a stop at attention)
  PC_LN2,          ///< LN2
  PC_GATE,         ///< the gate (MoE block)
  PC_ROUTE,        ///< routing; then park, the image's experts, or nothing
  PC_EXPERT_FC1,   ///< image-major expert e: fc1 + GELU
  PC_EXPERT_FC2,   ///< image-major expert e: fc2 scaled into x
  PC_FC1,          ///< dense fc1 + GELU
  PC_FC2,          ///< dense fc2 + residual
  PC_TAIL_END,     ///< the block is done: next block, or the final tokens
  PC_HEAD,         ///< LN1 of s.block
  PC_QKV,          ///< Q, K, V; then the slot attends
  PC_WRITE,        ///< a stage to the output (`wr`), then PC_IMAGE_DONE
  PC_IMAGE_DONE,   ///< the image is done or parks: park it, the slot's next image
  PC_LOAD,         ///< the slot's next image: pixels, or its parked x
  PC_EMBED,        ///< patch embedding
  PC_GROUP,        ///< expert-major MoE of a parked group: queue lengths, first chunk
  PC_GROUP_FC1,    ///< chunk cur: fc1 + GELU, merging chunk cur ^ 1 meanwhile
  PC_GROUP_FC2,    ///< chunk cur: fc2 scaled, gathering the next chunk meanwhile
  PC_GROUP_MERGE,  ///< the last chunk's merge
};

/// What PC_WRITE sends to the output.
enum LaneWrite {
  WR_X,     ///< x, EMBED_DIM columns
  WR_H,     ///< h, EMBED_DIM columns
  WR_QKV,   ///< wide, 3 * EMBED_DIM columns
  WR_GATE,  ///< wide, NUM_EXPERTS columns
};

/// The linear lane's turn: for slot s, the rest of its block and, unless its image is done
/// or parks, the next block's LN1 and Q, K, V; for a slot that needs one, its next image
/// up to its first attention. With group >= 0 (both slots idle), the expert-major MoE of
/// block `group` over the parked images of the segment instead.
///
/// Everything the lane does is one step of one loop, so each unit is called from exactly
/// one place: `linear_unit` has one call site (one RTL instance, UG1399 "pragma HLS
/// allocation": instances are counted per call in a function body), which is what keeps
/// the prefetched tiles of one call valid for the next.
/// \param next_proj whose proj the linear lane runs after this turn (proj_ahead)
/// \param parked set to the MoE block an image parks at
/// \param lane, lin the lane's own buffers and the linear unit's state (only this process
///        touches them)
void linear_lane(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
                 const Run& run, const Segment& seg, int next_proj, int group, Slot& s, int& parked,
                 Buffers& buf, LaneBuffers& lane, LinearState& lin) {
#pragma HLS INLINE off  // the lane is a DATAFLOW process: a module of its own
#pragma HLS ALLOCATION function instances = linear_unit limit = 1  // ONE unified linear unit
  const int stop = run.stop;
  int pc = group >= 0             ? PC_GROUP
           : s.state == SLOT_TAIL ? PC_TAIL
           : s.state == SLOT_LOAD ? PC_LOAD
                                  : PC_END;
  bool from_load = pc == PC_LOAD;  // a stop while loading leaves the next image to a turn
  bool parks = false;
  LaneWrite wr = WR_X;
  int e = 0;  // image-major: the expert running
  // expert-major group
  int count[MAX_BATCH][NUM_EXPERTS];
  QueueWalk walk;
  int cur = 0;  // the chunk computing
  bool first_chunk = true;
  const int group_size = int(seg.last - seg.first);
  const uint64_t group_out = uint64_t(seg.first) * run.out_stride;

lane_steps:
  while (pc != PC_END) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = 2 * NUM_EXPERTS + 16
    const BlockOffsets& blk = BLOCK[group >= 0 ? group : s.block];
    const int here = 1 + s.block * STAGES_PER_BLOCK;
    const uint64_t out_off = uint64_t(s.image) * run.out_stride;
    bool compute = false;  // this step's linear-unit call
    LinearCall call = {IN_H, OUT_PROJ, 0, 0, 0, 0, 0, 0, 0, 0, SIDE_NONE, 0};
    bool norm = false;  // this step's LayerNorm (LN1 or LN2): one LayerNorm unit
    uint64_t ln_g = 0;
    uint64_t ln_b = 0;
    RowSide move = SIDE_NONE;  // this step's side move on its own (expert-major)
    int move_chunk = 0;
    switch (pc) {
      case PC_TAIL:
        if (stop == here + STAGE_ATTN) {
          wr = WR_H;
          pc = PC_WRITE;
          break;
        }
        call = {IN_H,       OUT_PROJ, EMBED_DIM, EMBED_DIM, NUM_TOKENS, blk.proj_w,
                blk.proj_b, 0,        0,         0,         SIDE_NONE,  0};
        compute = true;
        wr = WR_X;
        pc = stop == here + STAGE_PROJ ? PC_WRITE : PC_LN2;
        break;
      case PC_LN2:
        norm = true;
        ln_g = blk.ln2_g;
        ln_b = blk.ln2_b;
        wr = WR_H;
        pc = stop == here + STAGE_LN2 ? PC_WRITE : IS_MOE[s.block] ? PC_GATE : PC_FC1;
        break;
      case PC_GATE:
        call = {IN_H, OUT_GATE, EMBED_DIM, NUM_EXPERTS, NUM_TOKENS, blk.gate_w[run.task],
                0,    0,        0,         0,           SIDE_NONE,  0};
        compute = true;
        wr = WR_GATE;
        pc = stop == here + STAGE_GATE ? PC_WRITE : PC_ROUTE;
        break;
      case PC_ROUTE:
        route_tokens<WIDE_COLS>(buf.wide, lane.routing);
        if (seg.park) {
          parks = true;
          pc = PC_IMAGE_DONE;
          break;
        }
        e = next_used(lane.routing.count, -1);  // an unused expert is never read
        pc = e < NUM_EXPERTS ? PC_EXPERT_FC1 : PC_TAIL_END;
        break;
      case PC_EXPERT_FC1: {
        const uint64_t base = expert_base(blk, e);
        call = {IN_H_GATHER,
                OUT_GELU,
                EMBED_DIM,
                EXPERT_HIDDEN,
                lane.routing.count[e],
                base,
                base + EXPERT_FC1_B,
                e,
                base + EXPERT_FC2_W,
                linear_tiles(EXPERT_HIDDEN, EMBED_DIM),
                SIDE_NONE,
                0};
        compute = true;
        pc = PC_EXPERT_FC2;
        break;
      }
      case PC_EXPERT_FC2: {
        // fc2's last tiles fetch the next used expert's first ones
        const uint64_t base = expert_base(blk, e);
        const int next = next_used(lane.routing.count, e);
        call = {IN_WIDE,
                OUT_EXPERT,
                EXPERT_HIDDEN,
                EMBED_DIM,
                lane.routing.count[e],
                base + EXPERT_FC2_W,
                base + EXPERT_FC2_B,
                e,
                expert_base(blk, next),
                linear_tiles(EMBED_DIM, EXPERT_HIDDEN),
                SIDE_NONE,
                0};
        compute = true;
        e = next;
        pc = e < NUM_EXPERTS ? PC_EXPERT_FC1 : PC_TAIL_END;
        break;
      }
      case PC_FC1:
        call = {IN_H,      OUT_GELU,  EMBED_DIM, MLP_HIDDEN, NUM_TOKENS,
                blk.fc1_w, blk.fc1_b, 0,         blk.fc2_w,  linear_tiles(MLP_HIDDEN, EMBED_DIM),
                SIDE_NONE, 0};
        compute = true;
        pc = PC_FC2;
        break;
      case PC_FC2:
        call = {
            IN_WIDE, OUT_RESIDUAL, MLP_HIDDEN, EMBED_DIM, NUM_TOKENS, blk.fc2_w, blk.fc2_b, 0, 0,
            0,       SIDE_NONE,    0};
        compute = true;
        pc = PC_TAIL_END;
        break;
      case PC_TAIL_END:
        if (stop == here + STAGE_MLP || s.block + 1 == DEPTH) {  // a stop, or the final tokens
          wr = WR_X;
          pc = PC_WRITE;
          break;
        }
        s.block += 1;
        pc = PC_HEAD;
        break;
      case PC_HEAD:
        norm = true;
        ln_g = blk.ln1_g;
        ln_b = blk.ln1_b;
        wr = WR_H;
        pc = stop == here + STAGE_LN1 ? PC_WRITE : PC_QKV;
        break;
      case PC_QKV:
        // qkv's last passes fetch the first tiles of the proj that follows on this lane
        call = {IN_H,
                OUT_QKV,
                EMBED_DIM,
                3 * EMBED_DIM,
                NUM_TOKENS,
                blk.qkv_w,
                blk.qkv_b,
                0,
                proj_ahead(next_proj, s.block),
                linear_tiles(EMBED_DIM, EMBED_DIM),
                SIDE_NONE,
                0};
        compute = true;
        wr = WR_QKV;
        if (stop == here + STAGE_QKV) {
          pc = PC_WRITE;
        } else {
          s.state = SLOT_ATTN;
          pc = PC_END;
        }
        break;
      case PC_WRITE:
        switch (wr) {
          case WR_X:
            write_rows<EMBED_DIM, EMBED_DIM, X_BANKS>(output, out_off, buf.x, NUM_TOKENS);
            break;
          case WR_H:
            write_rows<EMBED_DIM, EMBED_DIM, H_BANKS>(output, out_off, buf.h, NUM_TOKENS);
            break;
          case WR_QKV:
            write_rows<3 * EMBED_DIM, WIDE_COLS, WIDE_BANKS>(output, out_off, buf.wide, NUM_TOKENS);
            break;
          default:
            write_rows<NUM_EXPERTS, WIDE_COLS, WIDE_BANKS>(output, out_off, buf.wide, NUM_TOKENS);
            break;
        }
        pc = PC_IMAGE_DONE;
        break;
      case PC_IMAGE_DONE: {
        bool resumed = false;
        if (parks) {
          const uint32_t next = s.image + 2;
          resumed = next < seg.last && seg.from > 0;  // its parked x comes back as this one parks
          parked = s.block;
          park_image(output, out_off, scratch, uint64_t(s.image - seg.first) * SCRATCH_SLOT,
                     resumed, uint64_t(next) * run.out_stride, buf, lane.routing);
          parks = false;
        }
        next_image(seg, resumed, s);
        pc = (!from_load && s.state == SLOT_LOAD) ? PC_LOAD : PC_END;
        break;
      }
      case PC_LOAD:
        from_load = true;
        s.block = seg.from;
        if (seg.from == 0) {
          lin.ahead.count = 0;  // nothing fetched ahead survives into another image
          embed_load(bundle, images, s.image, buf, lane);
          pc = PC_EMBED;
        } else {
          if (!s.on_chip) {
            resume_image(output, out_off, buf);
          }
          pc = PC_HEAD;
        }
        break;
      case PC_EMBED:
        call = {IN_PIXELS, OUT_EMBED, PATCH_DIM, EMBED_DIM, NUM_PATCHES, OFF_PATCH_W,
                0,         0,         0,         0,         SIDE_NONE,   0};
        compute = true;
        wr = WR_X;
        pc = stop == 0 ? PC_WRITE : PC_HEAD;
        break;
      case PC_GROUP: {
        lin.ahead.count = 0;
      group_counts:
        for (int b = 0; b < group_size; ++b) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_BATCH
          ddr_read<PORT_SCRATCH, 4, true>(scratch, uint64_t(b) * SCRATCH_SLOT + SCRATCH_COUNT,
                                          NUM_EXPERTS, count[b]);
        }
        walk.e = 0;
        walk.b = 0;
        walk.n = -1;
        cur = 0;
        e = next_chunk(scratch, group_out, group_size, count, walk, lane.chunk[cur]);
        move = SIDE_GATHER;  // nothing to hide it behind
        move_chunk = cur;
        pc = e < NUM_EXPERTS ? PC_GROUP_FC1 : PC_GROUP_MERGE;
        break;
      }
      case PC_GROUP_FC1: {
        // fc1 of chunk cur merges chunk cur ^ 1 (the one before) into its tokens' x
        const uint64_t base = expert_base(blk, e);
        call = {IN_H,
                OUT_GELU,
                EMBED_DIM,
                EXPERT_HIDDEN,
                lane.chunk[cur].rows,
                base,
                base + EXPERT_FC1_B,
                0,
                base + EXPERT_FC2_W,
                linear_tiles(EXPERT_HIDDEN, EMBED_DIM),
                first_chunk ? SIDE_NONE : SIDE_MERGE,
                cur ^ 1};
        compute = true;
        pc = PC_GROUP_FC2;
        break;
      }
      case PC_GROUP_FC2: {
        // the next chunk (this expert's next, or the next expert's first) and its weights;
        // fc2 of chunk cur gathers its h meanwhile
        const uint64_t base = expert_base(blk, e);
        const int next =
            next_chunk(scratch, group_out, group_size, count, walk, lane.chunk[cur ^ 1]);
        call = {IN_WIDE,
                OUT_DELTA,
                EXPERT_HIDDEN,
                EMBED_DIM,
                lane.chunk[cur].rows,
                base + EXPERT_FC2_W,
                base + EXPERT_FC2_B,
                cur,
                expert_base(blk, next),
                linear_tiles(EMBED_DIM, EXPERT_HIDDEN),
                SIDE_GATHER,
                cur ^ 1};
        compute = true;
        cur ^= 1;
        e = next;
        first_chunk = false;
        pc = e < NUM_EXPERTS ? PC_GROUP_FC1 : PC_GROUP_MERGE;
        break;
      }
      default:  // PC_GROUP_MERGE: the last chunk's merge
        move = SIDE_MERGE;
        move_chunk = cur ^ 1;
        pc = PC_END;
        break;
    }
    // the units with more than one step's use, each called from this one place
    if (norm) {
      layernorm_block(bundle, ln_g, ln_b, buf);
    }
    if (move != SIDE_NONE) {
      move_rows(move, lane.chunk[move_chunk], output, scratch, buf.x, buf.h);
    }
    if (compute) {
      linear_unit(call, bundle, output, scratch, buf, lane, lin.ahead, lin.wtile);
    }
  }
}

/// The attention lane: attention of the image in these buffers, if it is its turn.
void attention_lane(bool attend, const act_t wide[NUM_TOKENS][WIDE_COLS],
                    act_t h[NUM_TOKENS][EMBED_DIM]) {
#pragma HLS INLINE off  // the lane is a DATAFLOW process: a module of its own
  if (attend) {
    attention(wide, h);
  }
}

/// The two lanes side by side: they share no buffer, no port and no table (each reads its
/// own ROM copies), so each array of the region has one process that reads or writes it.
void lanes(bool attend, const act_t att_wide[NUM_TOKENS][WIDE_COLS],
           act_t att_h[NUM_TOKENS][EMBED_DIM], const word_t* bundle, const word_t* images,
           word_t* output, word_t* scratch, const Run& run, const Segment& seg, int next_proj,
           int group, Slot& lin, int& parked, Buffers& lin_buf, LaneBuffers& lane,
           LinearState& lin_state) {
#pragma HLS INLINE off  // the DATAFLOW region stays a module (UG1399 "pragma HLS dataflow")
#pragma HLS DATAFLOW    // one image attends while the other uses the linear unit
  attention_lane(attend, att_wide, att_h);
  linear_lane(bundle, images, output, scratch, run, seg, next_proj, group, lin, parked, lin_buf,
              lane, lin_state);
}

/// One step: slot `att` attends (if that is its turn) beside slot `lin`'s linear turn (or,
/// with group >= 0, the group's expert-major MoE).
void lane_step(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
               const Run& run, const Segment& seg, int group, Slot& att, Buffers& att_buf,
               Slot& lin, Buffers& lin_buf, int& parked, LaneBuffers& lane,
               LinearState& lin_state) {
  // Not inlined, so that the ALLOCATION in run_images can share it: UG1399 (ALLOCATION)
  // limits only functions that are not inlined, and a small function may be inlined
  // automatically unless INLINE off says otherwise.
#pragma HLS INLINE off
  const bool attend = att.state == SLOT_ATTN;
  // the linear lane's call after this turn's last qkv: the attending image's proj; with
  // the other slot idle, this slot's own proj (after its own attention)
  const int next_proj = attend ? att.block : att.state == SLOT_IDLE ? -1 : -2;
  lanes(attend, att_buf.wide, att_buf.h, bundle, images, output, scratch, run, seg, next_proj,
        group, lin, parked, lin_buf, lane, lin_state);
  if (attend) {
    att.state = SLOT_TAIL;
  }
}

/// Images [first, last) of a call on the two slots: step k gives the linear lane to slot
/// k % 2 and the attention lane to the other. Expert-major (`park`): the images run to the
/// routing of the next MoE block and park; then a step with both slots idle runs that
/// block's experts over the group on the linear lane; then the images go on from there.
void run_images(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
                const Run& run, uint32_t first, uint32_t last, bool park, Buffers& buf_a,
                Buffers& buf_b, LaneBuffers& lane, LinearState& lin_state) {
#pragma HLS ALLOCATION function instances = lane_step limit = 1  // one pair of lanes, swapped
  Segment seg = {first, last, 0, park};
  Slot a = {SLOT_LOAD, first, 0, false};
  Slot b = {first + 1 < last ? SLOT_LOAD : SLOT_IDLE, first + 1, 0, false};
  int parked = DEPTH;
  bool a_linear = true;  // whose turn the linear lane is
segment_steps:
  for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 2 max = 2 * (MAX_BATCH + 1) * (DEPTH + 1)
    const bool idle = a.state == SLOT_IDLE && b.state == SLOT_IDLE;
    if (idle && parked == DEPTH) {
      break;  // every image wrote its output
    }
    const int group = idle ? parked : -1;  // the parked group's experts (in buf_a)
    if (a_linear || idle) {
      lane_step(bundle, images, output, scratch, run, seg, group, b, buf_b, a, buf_a, parked, lane,
                lin_state);
    } else {
      lane_step(bundle, images, output, scratch, run, seg, group, a, buf_a, b, buf_b, parked, lane,
                lin_state);
    }
    a_linear = !a_linear;
    if (idle) {
      if (parked + 1 == DEPTH) {
        break;  // the last block: the experts left the final tokens in the output slots
      }
      // the images go on from the block after, starting again with slot a's linear turn
      seg.from = parked + 1;
      parked = DEPTH;
      a = {SLOT_LOAD, first, seg.from, false};
      b = {first + 1 < last ? SLOT_LOAD : SLOT_IDLE, first + 1, seg.from, false};
      a_linear = true;
    }
  }
}

}  // namespace

uint32_t edgemoe_top(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
                     uint32_t task, uint32_t num_images, uint32_t debug_stop) {
// Each bundle its own adapter (UG1399 "pragma HLS interface"): depth for co-simulation,
// bursts and outstanding requests per direction (see AXI_BURST in ddr.h); the weights
// and images are only read, so their write side is the smallest the adapter allows.
#pragma HLS INTERFACE m_axi port = bundle offset = slave bundle = gmem_weights depth =  \
    DEPTH_WEIGHTS latency = 64 max_read_burst_length = AXI_BURST num_read_outstanding = \
        AXI_OUTSTANDING max_write_burst_length = 2 num_write_outstanding = 1
#pragma HLS INTERFACE m_axi port = images offset = slave bundle = gmem_images depth =  \
    DEPTH_IMAGES latency = 64 max_read_burst_length = AXI_BURST num_read_outstanding = \
        AXI_OUTSTANDING max_write_burst_length = 2 num_write_outstanding = 1
#pragma HLS INTERFACE m_axi port = output offset = slave bundle = gmem_output depth =  \
    DEPTH_OUTPUT latency = 64 max_read_burst_length = AXI_BURST num_read_outstanding = \
        AXI_OUTSTANDING max_write_burst_length = AXI_BURST num_write_outstanding = AXI_OUTSTANDING
#pragma HLS INTERFACE m_axi port = scratch offset = slave bundle = gmem_scratch depth = \
    DEPTH_SCRATCH latency = 64 max_read_burst_length = AXI_BURST num_read_outstanding = \
        AXI_OUTSTANDING max_write_burst_length = AXI_BURST num_write_outstanding = AXI_OUTSTANDING
#pragma HLS INTERFACE s_axilite port = task
#pragma HLS INTERFACE s_axilite port = num_images
#pragma HLS INTERFACE s_axilite port = debug_stop
#pragma HLS INTERFACE s_axilite port = return

  const uint32_t status = check_call(bundle, task, num_images, debug_stop);
  if (status != STATUS_OK) {
    return status;
  }

  // On-chip working sets of two images (URAM/BRAM), the linear lane's own buffers and the
  // linear unit's tile buffers: variables of the top, handed down by reference. The linear
  // unit reads LIN_IN consecutive columns of a row and writes LIN_OUT consecutive columns
  // per cycle: the buffers are banked by column (dim 2).
  static Buffers buf_a;
  static Buffers buf_b;
  static LaneBuffers lane;
  static LinearState lin_state;
#pragma HLS ARRAY_PARTITION variable = buf_a.x cyclic factor = X_BANKS dim = 2
#pragma HLS ARRAY_PARTITION variable = buf_a.h cyclic factor = H_BANKS dim = 2
#pragma HLS ARRAY_PARTITION variable = buf_a.wide cyclic factor = WIDE_BANKS dim = 2
#pragma HLS ARRAY_PARTITION variable = buf_b.x cyclic factor = X_BANKS dim = 2
#pragma HLS ARRAY_PARTITION variable = buf_b.h cyclic factor = H_BANKS dim = 2
#pragma HLS ARRAY_PARTITION variable = buf_b.wide cyclic factor = WIDE_BANKS dim = 2
#pragma HLS BIND_STORAGE variable = buf_a.wide type = ram_2p impl = uram  // the largest buffers
#pragma HLS BIND_STORAGE variable = buf_b.wide type = ram_2p impl = uram
#pragma HLS ARRAY_PARTITION variable = lane.pix cyclic factor = PIX_BANKS dim = \
    2  // LIN_IN per cycle
// routing writes one queue entry per expert per cycle
#pragma HLS ARRAY_PARTITION variable = lane.routing.count complete dim = 1
#pragma HLS ARRAY_PARTITION variable = lane.routing.token complete dim = 1
#pragma HLS ARRAY_PARTITION variable = lane.routing.weight complete dim = 1
#pragma HLS ARRAY_PARTITION variable = lin_state.wtile complete dim = 2  // a whole tile per cycle
  lin_state.ahead.count = 0;

  Run run;
  run.task = task;
  run.stop = int(debug_stop) - 1;
  run.out_stride = run.stop < 0 ? uint64_t(NUM_TOKENS) * EMBED_DIM * 4
                                : uint64_t(NUM_TOKENS) * MAX_STAGE_WIDTH * 4;
  const bool expert_major = num_images > 1 && run.stop < 0 && NUM_MOE_BLOCKS > 0;
  const uint32_t per_group = expert_major ? uint32_t(MAX_BATCH) : num_images;

group_loop:
  for (uint32_t g0 = 0; g0 < num_images; g0 += per_group) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_IMAGES / MAX_BATCH
    const uint32_t last = num_images - g0 < per_group ? num_images : g0 + per_group;
    run_images(bundle, images, output, scratch, run, g0, last, expert_major, buf_a, buf_b, lane,
               lin_state);
  }
  return STATUS_OK;
}
