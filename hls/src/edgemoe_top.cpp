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
                                  NUM_PATCHES * PATCH_DIM, &buf.pix[0][0]);
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

/// Expert e over the `rows` rows of its queue in buf.routing: fc1 + GELU into the (now
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
expert_loop:
  for (int e = 0; e < NUM_EXPERTS; ++e) {
    const int n = buf.routing.count[e];
    if (n == 0) {
      continue;  // an unused expert is never read
    }
    const uint64_t next_fc1 = expert_base(blk, next_used(buf.routing.count, e));
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
  ddr_write_i32<PORT_SCRATCH>(scratch, slot + SCRATCH_COUNT, NUM_EXPERTS, buf.routing.count);
park_queues:
  for (int e = 0; e < NUM_EXPERTS; ++e) {
    const int n = buf.routing.count[e];
    if (n > 0) {
      const uint64_t lst = uint64_t(e) * SCRATCH_LIST_STRIDE;
      ddr_write_i32<PORT_SCRATCH>(scratch, slot + SCRATCH_TOKEN + lst, n, buf.routing.token[e]);
      ddr_write_i32<PORT_SCRATCH>(scratch, slot + SCRATCH_WEIGHT + lst, n, buf.routing.weight[e]);
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

/// Run blocks [from, DEPTH) on the image on chip (image b of the call).
///
/// \param park true in the expert-major schedule: stop after the routing of the first
///        MoE block met and return that block (the caller parks the image)
/// \return DEPTH when the backbone is done, -1 when a debug stop wrote the output,
///         else the MoE block the image is parked at
int run_blocks(const word_t* bundle, word_t* output, const word_t* scratch, const Run& run,
               uint32_t b, int from, bool park, Buffers& buf) {
  act_t(&x)[NUM_TOKENS][EMBED_DIM] = buf.x;
  act_t(&h)[NUM_TOKENS][EMBED_DIM] = buf.h;
  act_t(&wide)[NUM_TOKENS][WIDE_COLS] = buf.wide;
  const uint64_t out_off = uint64_t(b) * run.out_stride;
  const int stop = run.stop;

block_loop:
  for (int i = from; i < DEPTH; ++i) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = DEPTH
    const BlockOffsets& blk = BLOCK[i];
    const int here = 1 + i * STAGES_PER_BLOCK;

    // ---- LN1 ----
    layernorm_block(bundle, blk.ln1_g, blk.ln1_b, buf);
    if (stop == here + STAGE_LN1) {
      write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, h, NUM_TOKENS);
      return -1;
    }

    // ---- Q, K, V ----
    // proj's first tile is fetched during qkv's last one (it waits out the attention)
    const LinearCall qkv = {
        IN_H,      OUT_QKV,   EMBED_DIM, 3 * EMBED_DIM, NUM_TOKENS,
        blk.qkv_w, blk.qkv_b, 0,         blk.proj_w,    linear_tiles(EMBED_DIM, EMBED_DIM)};
    linear_unit(qkv, bundle, output, scratch, buf);
    if (stop == here + STAGE_QKV) {
      write_rows<3 * EMBED_DIM, WIDE_COLS>(output, out_off, wide, NUM_TOKENS);
      return -1;
    }

    // ---- attention (output in h) ----
    attention(wide, h);
    if (stop == here + STAGE_ATTN) {
      write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, h, NUM_TOKENS);
      return -1;
    }

    // ---- proj + residual ----
    const LinearCall proj = {IN_H,       OUT_PROJ,   EMBED_DIM, EMBED_DIM, NUM_TOKENS,
                             blk.proj_w, blk.proj_b, 0,         0,         0};
    linear_unit(proj, bundle, output, scratch, buf);
    if (stop == here + STAGE_PROJ) {
      write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, x, NUM_TOKENS);
      return -1;
    }

    // ---- LN2 ----
    layernorm_block(bundle, blk.ln2_g, blk.ln2_b, buf);
    if (stop == here + STAGE_LN2) {
      write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, h, NUM_TOKENS);
      return -1;
    }

    if (IS_MOE[i]) {
      // ---- gate, routing ----
      const LinearCall gate = {
          IN_H, OUT_GATE, EMBED_DIM, NUM_EXPERTS, NUM_TOKENS, blk.gate_w[run.task], 0, 0, 0, 0};
      linear_unit(gate, bundle, output, scratch, buf);
      if (stop == here + STAGE_GATE) {
        write_rows<NUM_EXPERTS, WIDE_COLS>(output, out_off, wide, NUM_TOKENS);
        return -1;
      }
      route_tokens<WIDE_COLS>(wide, buf.routing);
      if (park) {
        return i;  // the caller parks the image (expert-major)
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
    if (stop == here + STAGE_MLP) {
      write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, x, NUM_TOKENS);
      return -1;
    }
  }
  return DEPTH;
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
    // this queue is done: the next image's, or the next expert's first (a new chunk)
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
/// chunk: fc1 + GELU, then fc2 scaled by the gate into delta. The chunks' x and h move
/// while the unit computes: fc1 of chunk c merges chunk c - 1's delta into its tokens'
/// x (in the output slots), fc2 of chunk c gathers chunk c + 1's h. Merges run in chunk
/// order, so a token still receives its experts in ascending order.
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
  int cur = 0;  // the chunk computing: buf.chunk[cur]
  int e = next_chunk(scratch, out_base, group, count, walk, buf.chunk[cur]);
  move_rows(SIDE_GATHER, buf.chunk[cur], output, scratch, buf);  // nothing to hide it behind
  bool first = true;
group_chunk:
  while (e < NUM_EXPERTS) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_EXPERTS
    const uint64_t base = expert_base(blk, e);
    const int rows = buf.chunk[cur].rows;
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
    const int next = next_chunk(scratch, out_base, group, count, walk, buf.chunk[cur ^ 1]);
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
  move_rows(SIDE_MERGE, buf.chunk[cur ^ 1], output, scratch, buf);  // the last chunk's
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

  // On-chip working set of one image (URAM/BRAM). The linear unit reads LIN_IN
  // consecutive columns of a row and writes LIN_OUT consecutive columns per cycle:
  // the buffers are banked by column.
  static Buffers buf;
#pragma HLS ARRAY_PARTITION variable = buf.x cyclic factor = LIN_OUT dim = 2
#pragma HLS ARRAY_PARTITION variable = buf.h cyclic factor = LIN_IN dim = 2
#pragma HLS ARRAY_PARTITION variable = buf.wide cyclic factor = LIN_IN dim = 2
#pragma HLS ARRAY_PARTITION variable = buf.pix cyclic factor = LIN_IN dim = 2
#pragma HLS ARRAY_PARTITION variable = buf.delta cyclic factor = LIN_OUT dim = 2
// routing writes one queue entry per expert per cycle
#pragma HLS ARRAY_PARTITION variable = buf.routing.count complete
#pragma HLS ARRAY_PARTITION variable = buf.routing.token dim = 1 complete
#pragma HLS ARRAY_PARTITION variable = buf.routing.weight dim = 1 complete
#pragma HLS BIND_STORAGE variable = buf.wide type = ram_2p impl = uram  // the largest buffer
#pragma HLS ALLOCATION function instances = linear_unit limit = 1       // ONE unified linear unit

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

  if (!expert_major) {
  image_loop:
    for (uint32_t b = 0; b < num_images; ++b) {
      embed_image(bundle, images, output, scratch, b, buf);
      if (run.stop == 0) {
        write_rows<EMBED_DIM, EMBED_DIM>(output, uint64_t(b) * run.out_stride, buf.x, NUM_TOKENS);
        continue;
      }
      if (run_blocks(bundle, output, scratch, run, b, 0, false, buf) == DEPTH) {
        write_rows<EMBED_DIM, EMBED_DIM>(output, uint64_t(b) * run.out_stride, buf.x, NUM_TOKENS);
      }
    }
    return STATUS_OK;
  }

group_loop:
  for (uint32_t g0 = 0; g0 < num_images; g0 += MAX_BATCH) {
    const int group = num_images - g0 < uint32_t(MAX_BATCH) ? int(num_images - g0) : MAX_BATCH;
    int at = DEPTH;  // the MoE block every image of the group is parked at
  group_first:
    for (int b = 0; b < group; ++b) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_BATCH
      const uint64_t out_off = uint64_t(g0 + b) * run.out_stride;
      embed_image(bundle, images, output, scratch, g0 + b, buf);
      at = run_blocks(bundle, output, scratch, run, g0 + b, 0, true, buf);
      if (at == DEPTH) {  // no MoE block to park at
        write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, buf.x, NUM_TOKENS);
      } else {
        park_image(output, out_off, scratch, uint64_t(b) * SCRATCH_SLOT, false, 0, buf);
      }
    }
  group_moe:
    while (at < DEPTH) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = NUM_MOE_BLOCKS
      experts_group(bundle, output, uint64_t(g0) * run.out_stride, scratch, at, group, buf);
      if (at + 1 == DEPTH) {
        break;  // the last block: the experts left the final tokens in the output slots
      }
      int next = DEPTH;
    group_resume:
      for (int b = 0; b < group; ++b) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_BATCH
        const uint64_t out_off = uint64_t(g0 + b) * run.out_stride;
        if (b == 0) {  // later images come back while the one before them parks
          resume_image(output, out_off, buf);
        }
        linear_prefetch().count = 0;
        next = run_blocks(bundle, output, scratch, run, g0 + b, at + 1, true, buf);
        const bool more = b + 1 < group;
        if (next == DEPTH) {
          write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, buf.x, NUM_TOKENS);
          if (more) {
            resume_image(output, out_off + run.out_stride, buf);
          }
        } else {
          park_image(output, out_off, scratch, uint64_t(b) * SCRATCH_SLOT, more,
                     out_off + run.out_stride, buf);
        }
      }
      at = next;
    }
  }
  return STATUS_OK;
}
