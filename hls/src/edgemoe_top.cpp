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

/// Write ROWS rows of COLS raw values (row stride STRIDE) to the output at a word offset.
template <int COLS, int STRIDE>
void write_rows(word_t* output, uint64_t byte_off, const act_t (*rows)[STRIDE], int n) {
  static_assert((COLS * 4) % WORD_BYTES == 0, "output rows are whole bus words");
write_rows_loop:
  for (int t = 0; t < n; ++t) {
    ddr_write_i32<PORT_OUTPUT>(output, byte_off + uint64_t(t) * COLS * 4, COLS, rows[t]);
  }
}

/// Park one token of an image: its x row to the image's output slot and its h row to its
/// scratch slot, and, when `resume`, load the same row of the next image's parked x into
/// x (each word is sent before it is replaced); a bus word on each channel per cycle.
void park_row(word_t* output, uint64_t x_at, word_t* scratch, uint64_t h_at, bool resume,
              uint64_t next_at, act_t x[EMBED_DIM], const act_t h[EMBED_DIM]) {
park_row_words:
  for (int w = 0; w < ROW_WORDS; ++w) {
#pragma HLS PIPELINE II = 1  // one bus word on each channel per cycle
    const uint64_t at = uint64_t(w) * WORD_BYTES;
    ddr_write_i32<PORT_OUTPUT>(output, x_at + at, ROW_LANES, &x[w * ROW_LANES]);
    ddr_write_i32<PORT_SCRATCH>(scratch, h_at + at, ROW_LANES, &h[w * ROW_LANES]);
    if (resume) {
      ddr_read<PORT_OUTPUT, 4, true>(output, next_at + at, ROW_LANES, &x[w * ROW_LANES]);
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

/// Patch embedding of image b into x: token bias staged in x, then one linear map.
void embed_image(const word_t* bundle, const word_t* images, word_t* output, const word_t* scratch,
                 uint32_t b, Buffers& buf) {
  linear_prefetch().count = 0;  // nothing fetched ahead survives into another image
  ddr_read<PORT_IMAGES, 1, false>(images, uint64_t(b) * NUM_PATCHES * PATCH_DIM,
                                  NUM_PATCHES * PATCH_DIM, &lane_buffers().pix[0][0]);
embed_token_bias:
  for (int t = 0; t < NUM_TOKENS; ++t) {
    ddr_read<PORT_WEIGHTS, 4, true>(bundle, OFF_TOKEN_BIAS + uint64_t(t) * EMBED_DIM * 4, EMBED_DIM,
                                    buf.x[t]);
  }
embed_cls:
  for (int c = 0; c < EMBED_DIM; ++c) {
    buf.x[0][c] = narrow<ACT_W, TOKEN_BIAS_F, ACT_F>(buf.x[0][c]);
  }
  const LinearCall embed = {IN_PIXELS,   OUT_EMBED, PATCH_DIM, EMBED_DIM, NUM_PATCHES,
                            OFF_PATCH_W, 0,         0,         0,         0};
  linear_unit(embed, bundle, output, scratch, buf);
}

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

/// Expert e over the `rows` rows of its queue (lane_buffers().routing): fc1 + GELU into the (now
/// free) wide buffer, then fc2 scaled by each row's gate weight into its token of x.
/// \param next_w_off the call that follows, whose first tile fc2's last one fetches
void run_expert(const word_t* bundle, word_t* output, const word_t* scratch, uint64_t base, int e,
                int rows, uint64_t next_w_off, Buffers& buf) {
  const LinearCall fc1 = {IN_H_GATHER,
                          OUT_GELU,
                          EMBED_DIM,
                          EXPERT_HIDDEN,
                          rows,
                          base,
                          base + EXPERT_FC1_B,
                          e,
                          base + EXPERT_FC2_W,
                          linear_tiles(EXPERT_HIDDEN, EMBED_DIM)};
  linear_unit(fc1, bundle, output, scratch, buf);
  const LinearCall fc2 = {IN_WIDE,
                          OUT_EXPERT,
                          EXPERT_HIDDEN,
                          EMBED_DIM,
                          rows,
                          base + EXPERT_FC2_W,
                          base + EXPERT_FC2_B,
                          e,
                          next_w_off,
                          linear_tiles(EMBED_DIM, EXPERT_HIDDEN)};
  linear_unit(fc2, bundle, output, scratch, buf);
}

/// The experts of one MoE block for the image on chip, over its own queues: only
/// non-empty ones, in ascending index, each fetching the next one's first tile ahead.
void experts_image(const word_t* bundle, word_t* output, const word_t* scratch,
                   const BlockOffsets& blk, Buffers& buf) {
  const Routing& rt = lane_buffers().routing;
expert_loop:
  for (int e = 0; e < NUM_EXPERTS; ++e) {
    const int n = rt.count[e];
    if (n == 0) {
      continue;  // an unused expert is never read
    }
    const uint64_t next_fc1 = expert_base(blk, next_used(rt.count, e));
    run_expert(bundle, output, scratch, expert_base(blk, e), e, n, next_fc1, buf);
  }
}

/// Bring a parked image's x back from its output slot.
void resume_image(const word_t* output, uint64_t out_off, Buffers& buf) {
resume_tokens:
  for (int t = 0; t < NUM_TOKENS; ++t) {
    ddr_read<PORT_OUTPUT, 4, true>(output, out_off + uint64_t(t) * SCRATCH_ROW, EMBED_DIM,
                                   buf.x[t]);
  }
}

/// Park the image on chip after the routing of a MoE block: x in its output slot (the
/// final tokens overwrite it), h (the experts' input: x itself changes as experts add
/// into it) and its queues in its scratch slot. With `resume`, the next image's parked x
/// comes back into x in the same pass (the read channel is free while parking writes).
void park_image(word_t* output, uint64_t out_off, word_t* scratch, uint64_t slot, bool resume,
                uint64_t next_off, Buffers& buf) {
park_tokens:
  for (int t = 0; t < NUM_TOKENS; ++t) {
    const uint64_t row = uint64_t(t) * SCRATCH_ROW;
    park_row(output, out_off + row, scratch, slot + SCRATCH_H + row, resume, next_off + row,
             buf.x[t], buf.h[t]);
  }
  const Routing& rt = lane_buffers().routing;
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
  static param_t ln_g[EMBED_DIM];
  static param_t ln_b[EMBED_DIM];
  ddr_read<PORT_WEIGHTS, 2, true>(bundle, g_off, EMBED_DIM, ln_g);
  ddr_read<PORT_WEIGHTS, 2, true>(bundle, b_off, EMBED_DIM, ln_b);
  layernorm_rows<NUM_TOKENS, EMBED_DIM, LN_LANES>(buf.x, ln_g, ln_b, buf.h, NUM_TOKENS);
}

/// What the stages after a block's attention left.
enum TailEnd {
  TAIL_NEXT,  ///< the image goes on to the next block
  TAIL_PARK,  ///< routed at a MoE block of the expert-major schedule: the caller parks it
  TAIL_DONE,  ///< the output holds the image's final tokens, or a debug stop's stage
};

/// LN1 and Q, K, V of block i for image b, on chip.
/// \param proj_w weights of the linear unit's next call (a proj) whose first tiles
///        qkv's last passes fetch; 0 for none
/// \return false when a debug stop wrote the output
bool block_head(const word_t* bundle, word_t* output, const word_t* scratch, const Run& run,
                uint32_t b, int i, uint64_t proj_w, Buffers& buf) {
  const BlockOffsets& blk = BLOCK[i];
  const int here = 1 + i * STAGES_PER_BLOCK;
  const uint64_t out_off = uint64_t(b) * run.out_stride;

  layernorm_block(bundle, blk.ln1_g, blk.ln1_b, buf);
  if (run.stop == here + STAGE_LN1) {
    write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, buf.h, NUM_TOKENS);
    return false;
  }
  const LinearCall qkv = {
      IN_H,      OUT_QKV,   EMBED_DIM, 3 * EMBED_DIM, NUM_TOKENS,
      blk.qkv_w, blk.qkv_b, 0,         proj_w,        linear_tiles(EMBED_DIM, EMBED_DIM)};
  linear_unit(qkv, bundle, output, scratch, buf);
  if (run.stop == here + STAGE_QKV) {
    write_rows<3 * EMBED_DIM, WIDE_COLS>(output, out_off, buf.wide, NUM_TOKENS);
    return false;
  }
  return true;
}

/// The stages of block i after its attention (which left its output in h): proj +
/// residual, LN2, then the dense MLP, or the gate, the routing and (image-major) the
/// experts. After the last block, the final tokens go to the output.
/// \param park expert-major: end at the routing of a MoE block (the caller parks)
TailEnd block_tail(const word_t* bundle, word_t* output, const word_t* scratch, const Run& run,
                   uint32_t b, int i, bool park, Buffers& buf) {
  const BlockOffsets& blk = BLOCK[i];
  const int here = 1 + i * STAGES_PER_BLOCK;
  const uint64_t out_off = uint64_t(b) * run.out_stride;
  const int stop = run.stop;

  if (stop == here + STAGE_ATTN) {
    write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, buf.h, NUM_TOKENS);
    return TAIL_DONE;
  }

  // ---- proj + residual ----
  const LinearCall proj = {IN_H,       OUT_PROJ,   EMBED_DIM, EMBED_DIM, NUM_TOKENS,
                           blk.proj_w, blk.proj_b, 0,         0,         0};
  linear_unit(proj, bundle, output, scratch, buf);
  if (stop == here + STAGE_PROJ) {
    write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, buf.x, NUM_TOKENS);
    return TAIL_DONE;
  }

  // ---- LN2 ----
  layernorm_block(bundle, blk.ln2_g, blk.ln2_b, buf);
  if (stop == here + STAGE_LN2) {
    write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, buf.h, NUM_TOKENS);
    return TAIL_DONE;
  }

  if (IS_MOE[i]) {
    // ---- gate, routing ----
    const LinearCall gate = {
        IN_H, OUT_GATE, EMBED_DIM, NUM_EXPERTS, NUM_TOKENS, blk.gate_w[run.task], 0, 0, 0, 0};
    linear_unit(gate, bundle, output, scratch, buf);
    if (stop == here + STAGE_GATE) {
      write_rows<NUM_EXPERTS, WIDE_COLS>(output, out_off, buf.wide, NUM_TOKENS);
      return TAIL_DONE;
    }
    route_tokens<WIDE_COLS>(buf.wide, lane_buffers().routing);
    if (park) {
      return TAIL_PARK;
    }
    // ---- experts in ascending index, only non-empty ones, each over its queue ----
    experts_image(bundle, output, scratch, blk, buf);
  } else {
    // ---- dense MLP ----
    const LinearCall fc1 = {
        IN_H,      OUT_GELU,  EMBED_DIM, MLP_HIDDEN, NUM_TOKENS,
        blk.fc1_w, blk.fc1_b, 0,         blk.fc2_w,  linear_tiles(MLP_HIDDEN, EMBED_DIM)};
    linear_unit(fc1, bundle, output, scratch, buf);
    const LinearCall fc2 = {IN_WIDE,   OUT_RESIDUAL, MLP_HIDDEN, EMBED_DIM, NUM_TOKENS,
                            blk.fc2_w, blk.fc2_b,    0,          0,         0};
    linear_unit(fc2, bundle, output, scratch, buf);
  }
  if (stop == here + STAGE_MLP || i + 1 == DEPTH) {  // a stop here, or the final tokens
    write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, buf.x, NUM_TOKENS);
    return TAIL_DONE;
  }
  return TAIL_NEXT;
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

/// The linear lane's turn for slot s: the rest of its block and, unless its image is
/// done or parks, the next block's LN1 and Q, K, V; for a slot that needs one, its next
/// image up to its first attention.
/// \param next_proj whose proj the linear lane runs after this turn (proj_ahead)
/// \param parked set to the MoE block an image parks at
void linear_lane(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
                 const Run& run, const Segment& seg, int next_proj, Slot& s, int& parked,
                 Buffers& buf) {
  if (s.state == SLOT_TAIL) {
    const TailEnd end = block_tail(bundle, output, scratch, run, s.image, s.block, seg.park, buf);
    if (end == TAIL_NEXT) {
      s.block += 1;
      if (block_head(bundle, output, scratch, run, s.image, s.block, proj_ahead(next_proj, s.block),
                     buf)) {
        s.state = SLOT_ATTN;
        return;
      }
    }
    // the image is done or parks: the slot's next one
    bool resumed = false;
    if (end == TAIL_PARK) {
      const uint32_t next = s.image + 2;
      resumed = next < seg.last && seg.from > 0;  // its parked x comes back as this one parks
      parked = s.block;
      park_image(output, uint64_t(s.image) * run.out_stride, scratch,
                 uint64_t(s.image - seg.first) * SCRATCH_SLOT, resumed,
                 uint64_t(next) * run.out_stride, buf);
    }
    next_image(seg, resumed, s);
  }
  if (s.state == SLOT_LOAD) {
    bool go = true;
    if (seg.from == 0) {
      embed_image(bundle, images, output, scratch, s.image, buf);
      if (run.stop == 0) {
        write_rows<EMBED_DIM, EMBED_DIM>(output, uint64_t(s.image) * run.out_stride, buf.x,
                                         NUM_TOKENS);
        go = false;
      }
    } else if (!s.on_chip) {
      resume_image(output, uint64_t(s.image) * run.out_stride, buf);
    }
    s.block = seg.from;
    if (go && block_head(bundle, output, scratch, run, s.image, s.block,
                         proj_ahead(next_proj, s.block), buf)) {
      s.state = SLOT_ATTN;
      return;
    }
    next_image(seg, false, s);  // a debug stop ended the image: the next on the next turn
  }
}

/// The attention lane: attention of the image in these buffers, if it is its turn.
void attention_lane(bool attend, const act_t wide[NUM_TOKENS][WIDE_COLS],
                    act_t h[NUM_TOKENS][EMBED_DIM]) {
  if (attend) {
    attention(wide, h);
  }
}

/// The two lanes side by side: they share no buffer and no port.
void lanes(bool attend, const act_t att_wide[NUM_TOKENS][WIDE_COLS],
           act_t att_h[NUM_TOKENS][EMBED_DIM], const word_t* bundle, const word_t* images,
           word_t* output, word_t* scratch, const Run& run, const Segment& seg, int next_proj,
           Slot& lin, int& parked, Buffers& lin_buf) {
#pragma HLS DATAFLOW  // one image attends while the other uses the linear unit
  attention_lane(attend, att_wide, att_h);
  linear_lane(bundle, images, output, scratch, run, seg, next_proj, lin, parked, lin_buf);
}

/// One step: slot `att` attends (if that is its turn) beside slot `lin`'s linear turn.
void lane_step(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
               const Run& run, const Segment& seg, Slot& att, Buffers& att_buf, Slot& lin,
               Buffers& lin_buf, int& parked) {
  const bool attend = att.state == SLOT_ATTN;
  // the linear lane's call after this turn's last qkv: the attending image's proj; with
  // the other slot idle, this slot's own proj (after its own attention)
  const int next_proj = attend ? att.block : att.state == SLOT_IDLE ? -1 : -2;
  lanes(attend, att_buf.wide, att_buf.h, bundle, images, output, scratch, run, seg, next_proj, lin,
        parked, lin_buf);
  if (attend) {
    att.state = SLOT_TAIL;
  }
}

/// Run a segment on the two slots: step k gives the linear lane to slot k % 2 and the
/// attention lane to the other.
/// \return the MoE block the images parked at, DEPTH when none did
int run_segment(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
                const Run& run, const Segment& seg, Buffers& buf_a, Buffers& buf_b) {
  Slot a = {SLOT_LOAD, seg.first, seg.from, false};
  Slot b = {seg.first + 1 < seg.last ? SLOT_LOAD : SLOT_IDLE, seg.first + 1, seg.from, false};
#pragma HLS ALLOCATION function instances = lane_step limit = 1  // one pair of lanes, swapped
  int parked = DEPTH;
segment_steps:
  for (int k = 0; a.state != SLOT_IDLE || b.state != SLOT_IDLE; ++k) {
#pragma HLS LOOP_TRIPCOUNT min = 2 max = 2 * (MAX_BATCH + 1) * (DEPTH + 1)
    if (k % 2 == 0) {
      lane_step(bundle, images, output, scratch, run, seg, b, buf_b, a, buf_a, parked);
    } else {
      lane_step(bundle, images, output, scratch, run, seg, a, buf_a, b, buf_b, parked);
    }
  }
  return parked;
}

/// Where the walk over a MoE block's queued tokens (expert, then image, then queue
/// entry) has got to.
struct QueueWalk {
  int e;  ///< expert (NUM_EXPERTS: done)
  int b;  ///< image of the group
  int n;  ///< length of that image's queue for e, -1 until read
  int j;  ///< its next entry
  int tok[NUM_TOKENS];
  wide_t weight[NUM_TOKENS];
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

/// The experts of MoE block i over a group of parked images (expert-major), chunk by
/// chunk: fc1 + GELU, then fc2 scaled by the gate into x (OUT_DELTA: x is free while the
/// images are parked). The chunks' x and h move while the unit computes: fc1 of chunk c
/// merges chunk c - 1's scaled outputs into its tokens' x (in the output slots), fc2 of
/// chunk c gathers chunk c + 1's h. Merges run in chunk order, so a token still receives
/// its experts in ascending order.
void experts_group(const word_t* bundle, word_t* output, uint64_t out_base, word_t* scratch, int i,
                   int group, Buffers& buf) {
  static int count[MAX_BATCH][NUM_EXPERTS];
  static QueueWalk walk;
  const BlockOffsets& blk = BLOCK[i];
  linear_prefetch().count = 0;

group_counts:
  for (int b = 0; b < group; ++b) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_BATCH
    ddr_read<PORT_SCRATCH, 4, true>(scratch, uint64_t(b) * SCRATCH_SLOT + SCRATCH_COUNT,
                                    NUM_EXPERTS, count[b]);
  }
  walk.e = 0;
  walk.b = 0;
  walk.n = -1;
  int cur = 0;  // the chunk computing: expert_chunks()[cur]
  int e = next_chunk(scratch, out_base, group, count, walk, expert_chunks()[cur]);
  move_rows(SIDE_GATHER, expert_chunks()[cur], output, scratch,
            buf);  // nothing to hide it behind
  bool first = true;
group_chunk:
  while (e < NUM_EXPERTS) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_EXPERTS
    const uint64_t base = expert_base(blk, e);
    const int rows = expert_chunks()[cur].rows;
    const LinearCall fc1 = {IN_H,
                            OUT_GELU,
                            EMBED_DIM,
                            EXPERT_HIDDEN,
                            rows,
                            base,
                            base + EXPERT_FC1_B,
                            0,
                            base + EXPERT_FC2_W,
                            linear_tiles(EXPERT_HIDDEN, EMBED_DIM),
                            first ? SIDE_NONE : SIDE_MERGE,
                            cur ^ 1};
    linear_unit(fc1, bundle, output, scratch, buf);
    // the next chunk (this expert's next, or the next expert's first) and its weights
    const int next = next_chunk(scratch, out_base, group, count, walk, expert_chunks()[cur ^ 1]);
    const LinearCall fc2 = {IN_WIDE,
                            OUT_DELTA,
                            EXPERT_HIDDEN,
                            EMBED_DIM,
                            rows,
                            base + EXPERT_FC2_W,
                            base + EXPERT_FC2_B,
                            cur,
                            expert_base(blk, next),
                            linear_tiles(EMBED_DIM, EXPERT_HIDDEN),
                            SIDE_GATHER,
                            cur ^ 1};
    linear_unit(fc2, bundle, output, scratch, buf);
    cur ^= 1;
    e = next;
    first = false;
  }
  move_rows(SIDE_MERGE, expert_chunks()[cur ^ 1], output, scratch, buf);  // the last chunk's
}

}  // namespace

uint32_t edgemoe_top(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
                     uint32_t task, uint32_t num_images, uint32_t debug_stop) {
#pragma HLS INTERFACE m_axi port = bundle offset = slave bundle = \
    gmem_weights max_read_burst_length = 256
#pragma HLS INTERFACE m_axi port = images offset = slave bundle = \
    gmem_images max_read_burst_length = 256
#pragma HLS INTERFACE m_axi port = output offset = slave bundle = \
    gmem_output max_write_burst_length = 256
#pragma HLS INTERFACE m_axi port = scratch offset = slave bundle = \
    gmem_scratch max_read_burst_length = 64 max_write_burst_length = 64
#pragma HLS INTERFACE s_axilite port = task
#pragma HLS INTERFACE s_axilite port = num_images
#pragma HLS INTERFACE s_axilite port = debug_stop
#pragma HLS INTERFACE s_axilite port = return

  const uint32_t status = check_call(bundle, task, num_images, debug_stop);
  if (status != STATUS_OK) {
    return status;
  }

  // On-chip working sets of two images (URAM/BRAM). The linear unit reads LIN_IN
  // consecutive columns of a row and writes LIN_OUT consecutive columns per cycle:
  // the buffers are banked by column.
  static Buffers buf_a;
  static Buffers buf_b;
#pragma HLS ARRAY_PARTITION variable = buf_a.x cyclic factor = LIN_OUT dim = 2
#pragma HLS ARRAY_PARTITION variable = buf_a.h cyclic factor = LIN_IN dim = 2
#pragma HLS ARRAY_PARTITION variable = buf_a.wide cyclic factor = LIN_IN dim = 2
#pragma HLS ARRAY_PARTITION variable = buf_b.x cyclic factor = LIN_OUT dim = 2
#pragma HLS ARRAY_PARTITION variable = buf_b.h cyclic factor = LIN_IN dim = 2
#pragma HLS ARRAY_PARTITION variable = buf_b.wide cyclic factor = LIN_IN dim = 2
#pragma HLS BIND_STORAGE variable = buf_a.wide type = ram_2p impl = uram  // the largest buffers
#pragma HLS BIND_STORAGE variable = buf_b.wide type = ram_2p impl = uram
#pragma HLS ALLOCATION function instances = linear_unit limit = 1  // ONE unified linear unit

  Run run;
  bundle = bundle;
  images = images;
  output = output;
  scratch = scratch;
  run.task = task;
  run.stop = int(debug_stop) - 1;
  run.out_stride = run.stop < 0 ? uint64_t(NUM_TOKENS) * EMBED_DIM * 4
                                : uint64_t(NUM_TOKENS) * MAX_STAGE_WIDTH * 4;
  const bool expert_major = num_images > 1 && run.stop < 0 && NUM_MOE_BLOCKS > 0;
  const uint32_t per_group = expert_major ? uint32_t(MAX_BATCH) : num_images;

group_loop:
  for (uint32_t g0 = 0; g0 < num_images; g0 += per_group) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_IMAGES / MAX_BATCH
    Segment seg = {g0, num_images - g0 < per_group ? num_images : g0 + per_group, 0, expert_major};
  group_segments:
    for (;;) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_MOE_BLOCKS + 1
      const int at = run_segment(bundle, images, output, scratch, run, seg, buf_a, buf_b);
      if (at == DEPTH) {
        break;  // every image wrote its output
      }
      experts_group(bundle, output, uint64_t(g0) * run.out_stride, scratch, at,
                    int(seg.last - seg.first), buf_a);
      if (at + 1 == DEPTH) {
        break;  // the last block: the experts left the final tokens in the output slots
      }
      seg.from = at + 1;
    }
  }
  return STATUS_OK;
}
