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

// Accumulator fraction bits of each linear-unit call (input F + weight F).
constexpr int LIN_ACC_F = ACT_F + WEIGHT_F;
constexpr int PATCH_ACC_F = PIXEL_F + PATCH_WEIGHT_F;
constexpr int GATE_ACC_F = ACT_F + GATE_WEIGHT_F;

static_assert(TOKEN_BIAS_W <= ACT_W, "token bias is staged in the activation buffer");
static_assert(PATCH_ACC_F >= TOKEN_BIAS_F && LIN_ACC_F >= BIAS_F && LIN_ACC_F >= ATTN_BIAS_F,
              "biases align to the accumulator by a left shift");

/// Patch embedding epilogue: x[row + 1] (holding the raw token bias) becomes
/// narrow(acc + token_bias).
struct EmbedEpilogue {
  act_t (*x)[EMBED_DIM];
  void apply(int row, int col, wide_t acc, wide_t /*bias*/) {
    const wide_t tb = x[row + 1][col];
    x[row + 1][col] = narrow<ACT_W, PATCH_ACC_F, ACT_F>(acc + (tb << (PATCH_ACC_F - TOKEN_BIAS_F)));
  }
};

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

  // On-chip working set of one image (URAM/BRAM).
  static act_t x[NUM_TOKENS][EMBED_DIM];     // residual stream
  static act_t h[NUM_TOKENS][EMBED_DIM];     // LN output, then attention output
  static act_t wide[NUM_TOKENS][WIDE_COLS];  // Q/K/V, MLP hidden, gate logits
  static pixel_t pix[NUM_PATCHES][PATCH_DIM];
  static Routing routing;
  static param_t ln_g[EMBED_DIM];
  static param_t ln_b[EMBED_DIM];
  // The linear unit reads LIN_IN consecutive columns of a row and writes LIN_OUT
  // consecutive columns per cycle: bank the buffers by column.
#pragma HLS ARRAY_PARTITION variable = x cyclic factor = LIN_OUT dim = 2
#pragma HLS ARRAY_PARTITION variable = h cyclic factor = LIN_IN dim = 2
#pragma HLS ARRAY_PARTITION variable = wide cyclic factor = LIN_IN dim = 2
#pragma HLS ARRAY_PARTITION variable = pix cyclic factor = LIN_IN dim = 2
#pragma HLS BIND_STORAGE variable = wide type = ram_2p impl = uram  // the largest buffer

  const int stop = int(debug_stop) - 1;  // -1: none; 0: embed; 1 + 7*i + s: block i stage s
  const uint64_t out_stride =
      stop < 0 ? uint64_t(NUM_TOKENS) * EMBED_DIM * 4 : uint64_t(NUM_TOKENS) * MAX_STAGE_WIDTH * 4;

image_loop:
  for (uint32_t b = 0; b < num_images; ++b) {
    const uint64_t out_off = uint64_t(b) * out_stride;

    // ---- patch embedding: token bias staged in x, then one linear map per patch ----
    ddr_read<PORT_IMAGES, 1, false>(images, uint64_t(b) * NUM_PATCHES * PATCH_DIM,
                                    NUM_PATCHES * PATCH_DIM, &pix[0][0]);
  embed_token_bias:
    for (int t = 0; t < NUM_TOKENS; ++t) {
      ddr_read<PORT_WEIGHTS, 4, true>(bundle, OFF_TOKEN_BIAS + uint64_t(t) * EMBED_DIM * 4,
                                      EMBED_DIM, x[t]);
    }
  embed_cls:
    for (int c = 0; c < EMBED_DIM; ++c) {
      x[0][c] = narrow<ACT_W, TOKEN_BIAS_F, ACT_F>(x[0][c]);
    }
    {
      RowSource<pixel_t, PATCH_DIM> src = {pix, nullptr, 0};
      EmbedEpilogue epi = {x};
      linear_unit<PATCH_DIM, EMBED_DIM, NUM_PATCHES>(src, NUM_PATCHES, bundle, OFF_PATCH_W, 0, epi);
    }
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
    ln1_token:
      for (int t = 0; t < NUM_TOKENS; ++t) {
        layernorm_token<EMBED_DIM, LN_LANES>(x[t], ln_g, ln_b, h[t]);
      }
      if (stop == here + STAGE_LN1) {
        write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, h, NUM_TOKENS);
        stopped = true;
        break;
      }

      // ---- Q, K, V ----
      {
        RowSource<act_t, EMBED_DIM> src = {h, nullptr, 0};
        StoreEpilogue<ATTN_QKV_W, ATTN_QKV_F, LIN_ACC_F, ATTN_BIAS_F, false, WIDE_COLS> epi = {
            wide};
        linear_unit<EMBED_DIM, 3 * EMBED_DIM, NUM_TOKENS>(src, NUM_TOKENS, bundle, blk.qkv_w,
                                                          blk.qkv_b, epi);
      }
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
      {
        RowSource<act_t, EMBED_DIM> src = {h, nullptr, 0};
        ResidualEpilogue<LIN_ACC_F, ATTN_BIAS_F> epi = {x};
        linear_unit<EMBED_DIM, EMBED_DIM, NUM_TOKENS>(src, NUM_TOKENS, bundle, blk.proj_w,
                                                      blk.proj_b, epi);
      }
      if (stop == here + STAGE_PROJ) {
        write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, x, NUM_TOKENS);
        stopped = true;
        break;
      }

      // ---- LN2 ----
      ddr_read<PORT_WEIGHTS, 2, true>(bundle, blk.ln2_g, EMBED_DIM, ln_g);
      ddr_read<PORT_WEIGHTS, 2, true>(bundle, blk.ln2_b, EMBED_DIM, ln_b);
    ln2_token:
      for (int t = 0; t < NUM_TOKENS; ++t) {
        layernorm_token<EMBED_DIM, LN_LANES>(x[t], ln_g, ln_b, h[t]);
      }
      if (stop == here + STAGE_LN2) {
        write_rows<EMBED_DIM, EMBED_DIM>(output, out_off, h, NUM_TOKENS);
        stopped = true;
        break;
      }

      RowSource<act_t, EMBED_DIM> hsrc = {h, nullptr, 0};
      if (IS_MOE[i]) {
        // ---- gate, routing ----
        StoreEpilogue<ATTN_SCORE_W, ATTN_SCORE_F, GATE_ACC_F, 0, false, WIDE_COLS> gate_epi = {
            wide};
        linear_unit<EMBED_DIM, NUM_EXPERTS, NUM_TOKENS>(hsrc, NUM_TOKENS, bundle, blk.gate_w[task],
                                                        0, gate_epi);
        if (stop == here + STAGE_GATE) {
          write_rows<NUM_EXPERTS, WIDE_COLS>(output, out_off, wide, NUM_TOKENS);
          stopped = true;
          break;
        }
        route_tokens<WIDE_COLS>(wide, routing);

        // ---- experts in ascending index, only non-empty ones, each over its queue ----
      expert_loop:
        for (int e = 0; e < NUM_EXPERTS; ++e) {
          const int n = routing.count[e];
          if (n == 0) {
            continue;  // an unused expert is never read
          }
          const uint64_t base = blk.experts + uint64_t(e) * EXPERT_STRIDE;
          RowSource<act_t, EMBED_DIM> gathered = {h, routing.token[e], 0};
          // expert hidden rows in queue order, in the (now free) wide buffer
          StoreEpilogue<ACT_W, ACT_F, LIN_ACC_F, BIAS_F, true, WIDE_COLS> fc1_epi = {wide};
          linear_unit<EMBED_DIM, EXPERT_HIDDEN, NUM_TOKENS>(gathered, n, bundle, base,
                                                            base + EXPERT_FC1_B, fc1_epi);
          RowSource<act_t, WIDE_COLS> hid = {wide, nullptr, 0};
          ExpertEpilogue<LIN_ACC_F, BIAS_F> fc2_epi = {x, routing.token[e], routing.weight[e]};
          linear_unit<EXPERT_HIDDEN, EMBED_DIM, NUM_TOKENS>(hid, n, bundle, base + EXPERT_FC2_W,
                                                            base + EXPERT_FC2_B, fc2_epi);
        }
      } else {
        // ---- dense MLP ----
        StoreEpilogue<ACT_W, ACT_F, LIN_ACC_F, BIAS_F, true, WIDE_COLS> fc1_epi = {wide};
        linear_unit<EMBED_DIM, MLP_HIDDEN, NUM_TOKENS>(hsrc, NUM_TOKENS, bundle, blk.fc1_w,
                                                       blk.fc1_b, fc1_epi);
        RowSource<act_t, WIDE_COLS> hid = {wide, nullptr, 0};
        ResidualEpilogue<LIN_ACC_F, BIAS_F> fc2_epi = {x};
        linear_unit<MLP_HIDDEN, EMBED_DIM, NUM_TOKENS>(hid, NUM_TOKENS, bundle, blk.fc2_w,
                                                       blk.fc2_b, fc2_epi);
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
