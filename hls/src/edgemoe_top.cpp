// The accelerator: the whole M3ViT backbone for num_images images of one task.
//
// Per image: patch embedding -> DEPTH blocks (LN1, QKV, attention, proj + residual,
// LN2, dense MLP or MoE + residual) -> the tokens before the final norm, written
// to the output buffer. Activations stay on chip; the weight bundle streams from
// DDR, each tensor (and each used expert) once per image. debug_stop ends every
// image after one stage and leaves that stage in the output buffer.
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

}  // namespace

uint32_t edgemoe_top(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
                     uint32_t task, uint32_t num_images, uint32_t debug_stop) {
#pragma HLS INTERFACE m_axi port = bundle offset = slave bundle = \
    gmem_weights max_read_burst_length = 256
#pragma HLS INTERFACE m_axi port = images offset = slave bundle = \
    gmem_images max_read_burst_length = 256
#pragma HLS INTERFACE m_axi port = output offset = slave bundle = \
    gmem_output max_write_burst_length = 256
#pragma HLS INTERFACE m_axi port = scratch offset = slave bundle = gmem_scratch
#pragma HLS INTERFACE s_axilite port = task
#pragma HLS INTERFACE s_axilite port = num_images
#pragma HLS INTERFACE s_axilite port = debug_stop
#pragma HLS INTERFACE s_axilite port = return
  (void)scratch;  // reserved for the batched (expert-major) mode, DESIGN.md §4.5

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
#pragma HLS BIND_STORAGE variable = buf.wide type = ram_2p impl = uram  // the largest buffer
#pragma HLS ALLOCATION function instances = linear_unit limit = 1       // ONE unified linear unit
  static param_t ln_g[EMBED_DIM];
  static param_t ln_b[EMBED_DIM];
  act_t(&x)[NUM_TOKENS][EMBED_DIM] = buf.x;
  act_t(&h)[NUM_TOKENS][EMBED_DIM] = buf.h;
  act_t(&wide)[NUM_TOKENS][WIDE_COLS] = buf.wide;

  const int stop = int(debug_stop) - 1;  // -1: none; 0: embed; 1 + 7*i + s: block i stage s
  const uint64_t out_stride =
      stop < 0 ? uint64_t(NUM_TOKENS) * EMBED_DIM * 4 : uint64_t(NUM_TOKENS) * MAX_STAGE_WIDTH * 4;

image_loop:
  for (uint32_t b = 0; b < num_images; ++b) {
    const uint64_t out_off = uint64_t(b) * out_stride;
    linear_prefetch().valid = false;  // nothing fetched ahead survives into another image

    // ---- patch embedding: token bias staged in x, then one linear map per patch ----
    ddr_read<PORT_IMAGES, 1, false>(images, uint64_t(b) * NUM_PATCHES * PATCH_DIM,
                                    NUM_PATCHES * PATCH_DIM, &buf.pix[0][0]);
  embed_token_bias:
    for (int t = 0; t < NUM_TOKENS; ++t) {
      ddr_read<PORT_WEIGHTS, 4, true>(bundle, OFF_TOKEN_BIAS + uint64_t(t) * EMBED_DIM * 4,
                                      EMBED_DIM, x[t]);
    }
  embed_cls:
    for (int c = 0; c < EMBED_DIM; ++c) {
      x[0][c] = narrow<ACT_W, TOKEN_BIAS_F, ACT_F>(x[0][c]);
    }
    const LinearCall embed = {IN_PIXELS,   OUT_EMBED, PATCH_DIM, EMBED_DIM, NUM_PATCHES,
                              OFF_PATCH_W, 0,         0,         0};
    linear_unit(embed, bundle, buf);
    if (stop == 0) {
      write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, x, NUM_TOKENS);
      continue;
    }

    bool stopped = false;
  block_loop:
    for (int i = 0; i < DEPTH; ++i) {
      const BlockOffsets& blk = BLOCK[i];
      const int here = 1 + i * STAGES_PER_BLOCK;

      // ---- LN1 ----
      ddr_read<PORT_WEIGHTS, 2, true>(bundle, blk.ln1_g, EMBED_DIM, ln_g);
      ddr_read<PORT_WEIGHTS, 2, true>(bundle, blk.ln1_b, EMBED_DIM, ln_b);
      layernorm_rows<NUM_TOKENS, EMBED_DIM, LN_LANES>(x, ln_g, ln_b, h, NUM_TOKENS);
      if (stop == here + STAGE_LN1) {
        write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, h, NUM_TOKENS);
        stopped = true;
        break;
      }

      // ---- Q, K, V ----
      // proj's first tile is fetched during qkv's last one (it waits out the attention)
      const LinearCall qkv = {IN_H,      OUT_QKV,   EMBED_DIM, 3 * EMBED_DIM, NUM_TOKENS,
                              blk.qkv_w, blk.qkv_b, 0,         blk.proj_w};
      linear_unit(qkv, bundle, buf);
      if (stop == here + STAGE_QKV) {
        write_rows<3 * EMBED_DIM, WIDE_COLS>(output, out_off, wide, NUM_TOKENS);
        stopped = true;
        break;
      }

      // ---- attention (output in h) ----
      attention(wide, h);
      if (stop == here + STAGE_ATTN) {
        write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, h, NUM_TOKENS);
        stopped = true;
        break;
      }

      // ---- proj + residual ----
      const LinearCall proj = {IN_H,       OUT_PROJ,   EMBED_DIM, EMBED_DIM, NUM_TOKENS,
                               blk.proj_w, blk.proj_b, 0,         0};
      linear_unit(proj, bundle, buf);
      if (stop == here + STAGE_PROJ) {
        write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, x, NUM_TOKENS);
        stopped = true;
        break;
      }

      // ---- LN2 ----
      ddr_read<PORT_WEIGHTS, 2, true>(bundle, blk.ln2_g, EMBED_DIM, ln_g);
      ddr_read<PORT_WEIGHTS, 2, true>(bundle, blk.ln2_b, EMBED_DIM, ln_b);
      layernorm_rows<NUM_TOKENS, EMBED_DIM, LN_LANES>(x, ln_g, ln_b, h, NUM_TOKENS);
      if (stop == here + STAGE_LN2) {
        write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, h, NUM_TOKENS);
        stopped = true;
        break;
      }

      if (IS_MOE[i]) {
        // ---- gate, routing ----
        const LinearCall gate = {
            IN_H, OUT_GATE, EMBED_DIM, NUM_EXPERTS, NUM_TOKENS, blk.gate_w[task], 0, 0, 0};
        linear_unit(gate, bundle, buf);
        if (stop == here + STAGE_GATE) {
          write_rows<NUM_EXPERTS, WIDE_COLS>(output, out_off, wide, NUM_TOKENS);
          stopped = true;
          break;
        }
        route_tokens<WIDE_COLS>(wide, buf.routing);

        // ---- experts in ascending index, only non-empty ones, each over its queue ----
      expert_loop:
        for (int e = 0; e < NUM_EXPERTS; ++e) {
          const int n = buf.routing.count[e];
          if (n == 0) {
            continue;  // an unused expert is never read
          }
          const uint64_t base = blk.experts + uint64_t(e) * EXPERT_STRIDE;
          // hidden rows in queue order, in the (now free) wide buffer
          // the next non-empty expert's first tile streams in during this one's last
          int next = e + 1;
        expert_next:
          while (next < NUM_EXPERTS && buf.routing.count[next] == 0) {
#pragma HLS LOOP_TRIPCOUNT min = 0 max = NUM_EXPERTS
            ++next;
          }
          const uint64_t next_fc1 =
              next < NUM_EXPERTS ? blk.experts + uint64_t(next) * EXPERT_STRIDE : 0;
          const LinearCall fc1 = {IN_H_GATHER,         OUT_GELU, EMBED_DIM,
                                  EXPERT_HIDDEN,       n,        base,
                                  base + EXPERT_FC1_B, e,        base + EXPERT_FC2_W};
          linear_unit(fc1, bundle, buf);
          const LinearCall fc2 = {IN_WIDE, OUT_EXPERT,          EXPERT_HIDDEN,       EMBED_DIM,
                                  n,       base + EXPERT_FC2_W, base + EXPERT_FC2_B, e,
                                  next_fc1};
          linear_unit(fc2, bundle, buf);
        }
      } else {
        // ---- dense MLP ----
        const LinearCall fc1 = {IN_H,      OUT_GELU,  EMBED_DIM, MLP_HIDDEN, NUM_TOKENS,
                                blk.fc1_w, blk.fc1_b, 0,         blk.fc2_w};
        linear_unit(fc1, bundle, buf);
        const LinearCall fc2 = {IN_WIDE,   OUT_RESIDUAL, MLP_HIDDEN, EMBED_DIM, NUM_TOKENS,
                                blk.fc2_w, blk.fc2_b,    0,          0};
        linear_unit(fc2, bundle, buf);
      }
      if (stop == here + STAGE_MLP) {
        write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, x, NUM_TOKENS);
        stopped = true;
        break;
      }
    }
    if (!stopped) {
      write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, x, NUM_TOKENS);
    }
  }
  return STATUS_OK;
}
