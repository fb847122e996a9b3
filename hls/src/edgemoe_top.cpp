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
// - expert-major (num_images > 1): images run in groups of up to MAX_GROUP. Each image
//   runs on chip up to the routing of the next MoE block and parks its residual
//   stream in its output region, its LN2 output and expert queues in its scratch slot
//   (two ports side by side); then the experts run in ascending index over the queued
//   tokens of the whole group, NUM_TOKENS at a time, so an expert's weights cross DDR
//   once per NUM_TOKENS queued tokens instead of once per image. The tokens' h and x
//   move while the linear unit computes; a token still receives its experts in
//   ascending order.
//
// This file holds the interface (the top function and its pragmas), the bundle-header
// check and the loop over image groups; each group runs on the two-lane scheduler
// (edgemoe/lanes.h), whose steps live in edgemoe/stages.h (dense steps),
// edgemoe/experts.h (expert schedules) and edgemoe/park.h (park and resume).
// Golden: edgemoe.sim.golden.Golden.run. Contract: bit-exact.
#include "edgemoe/edgemoe.h"

using namespace edgemoe;  // NOLINT: this file is the kernel

namespace {

/// Status of the header and arguments: anything but STATUS_OK leaves the output untouched.
uint32_t check_call(const word_t* bundle, uint32_t task, uint32_t num_images, uint32_t debug_stop) {
  // Header words (edgemoe.host.bundle): magic, version | profile << 16, config hash,
  // header bytes, payload bytes (2 words), payload CRC32, tiling.
  uint32_t hdr[8];
#pragma HLS ARRAY_PARTITION variable = hdr complete dim = 1  // 4 words per cycle (F15)
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
  const DecTask& dtask = DECODER[task];
  if (debug_stop >= DEC_TOKENS_STOP) {
    // the backbone's tokens of a task with a decoder, or one of its stages
    const int convs = dtask.convs;
    const uint32_t last = convs > 0 ? uint32_t(dtask.conv[convs - 1].stop) : 0;
    return convs > 0 && debug_stop <= last ? STATUS_OK : STATUS_BAD_DEBUG_STOP;
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

#ifndef __SYNTHESIS__
/// A value of a W-bit signed format from a counter: a scrambled pattern that uses every bit.
template <int W>
wide_t poison_value(uint32_t i) {
  const uint32_t h = (i + 0x9E3779B9u) * 2654435761u;
  return wide_t(int64_t(h >> 3) % (int64_t(1) << (W - 1)));  // |v| < 2^(W-1), either sign
}

/// C-sim only: overwrite the on-chip buffers with a pattern before every call. The
/// hardware's buffers start with whatever the last call (or, for URAM, power-up) left, so
/// no result may depend on their contents at entry; with this, every C-sim test checks
/// that (F18). The queue entries stay valid token ids: only their contents past each
/// queue's count are ever not written first, and those are never used as an index.
void poison_buffers(Buffers& a, Buffers& b, LaneBuffers& lane) {
  uint32_t i = 0;
  Buffers* sets[2] = {&a, &b};
  for (Buffers* s : sets) {
    for (int t = 0; t < NUM_TOKENS; ++t) {
      for (int c = 0; c < EMBED_DIM; ++c) {
        s->x[t][c] = act_t(poison_value<ACT_W>(i++));
        s->h[t][c] = act_t(poison_value<ACT_W>(i++));
      }
      for (int c = 0; c < WIDE_COLS; ++c) {
        s->wide[t][c] = act_t(poison_value<ACT_W>(i++));
      }
    }
  }
  for (int p = 0; p < NUM_PATCHES; ++p) {
    for (int c = 0; c < PATCH_DIM; ++c) {
      lane.pix[p][c] = pixel_t(poison_value<9>(i++) & 0xFF);
    }
  }
  for (int e = 0; e < NUM_EXPERTS; ++e) {
    for (int t = 0; t < NUM_TOKENS; ++t) {
      lane.routing.token[e][t] = int((poison_value<16>(i++) & 0x7FFF) % NUM_TOKENS);
      lane.routing.weight[e][t] = prob_t(poison_value<PROB_W>(i++) & ONE);
    }
  }
}
#endif

}  // namespace

uint32_t edgemoe_top(const word_t* bundle, const word_t* images, word_t* output, word_t* scratch,
                     uint32_t task, uint32_t num_images, uint32_t debug_stop, word_t* maps) {
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
// The task decoder's feature maps: the scratch buffer again (the host writes the same address),
// on a master of its own: the decoder's band loads and stores run in the side lane, a DATAFLOW
// process beside the linear lane, which keeps scratch (UG1448 200-992: one process per
// argument); scratch's settings.
#pragma HLS INTERFACE m_axi port = maps offset = slave bundle = gmem_maps depth =       \
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
  // linear unit's tile buffers: static variables of the top (the only statics of the kernel;
  // no function below the top has one), handed down by reference: plain memories of the
  // top module. Their C++ zero initial value is put in the bitstream and never restored
  // (UG1399 "Initialization Behavior"; the URAM of buf_*.wide cannot hold bitstream
  // content at all: UG573, not checked here), so no result may depend on their contents at
  // entry, and none does: every element is written before it is read within a call (the
  // C-sim overwrites them with a pattern before each call to check this: F18). The
  // linear unit reads LIN_IN consecutive columns of a row and writes LIN_OUT consecutive
  // columns per cycle: the buffers are banked by column (dim 2).
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
// load_scales stores a bus word's WORD_BYTES / 2 entries per cycle (F15); scale_of reads one
#pragma HLS ARRAY_PARTITION variable = lin_state.scales.word cyclic factor = WORD_BYTES / 2 dim = 1
#ifndef __SYNTHESIS__
  poison_buffers(buf_a, buf_b, lane);  // nothing may rely on their initial contents (F18)
#endif
  lin_state.ahead.count = 0;
  load_scales(bundle, lin_state.scales);  // the tensors' binary points, for every call

  Run run;
  run.task = task;
  run.stop = debug_stop == 0 || debug_stop >= DEC_TOKENS_STOP ? NO_STOP : int(debug_stop) - 1;
  run.out_stride = run.stop == NO_STOP ? uint64_t(NUM_TOKENS) * EMBED_DIM * 4
                                       : uint64_t(NUM_TOKENS) * MAX_STAGE_WIDTH * 4;
  // a decoding call: each image's region holds its final tokens, then the stage's output
  // (edgemoe.host.contracts.decoder.output_words)
  const DecTask& dtask = DECODER[task];
  run.decode = dtask.convs > 0 && (debug_stop == 0 || debug_stop > DEC_TOKENS_STOP);
  run.dec_stop = run.decode ? debug_stop : 0;
  if (run.decode) {
    int words = debug_stop == uint32_t(dtask.norm_stop) ? dtask.norm_words : 0;
  dec_stage_words:
    for (int i = 0; i < DEC_MAX_CONVS; ++i) {
      const DecConv& cv = dtask.conv[i];
      const bool last = i + 1 == dtask.convs;
      if (i < dtask.convs) {
        words = (debug_stop == 0 && last) || debug_stop == uint32_t(cv.stop) ? cv.out_words : words;
        words = cv.fused_up && debug_stop == uint32_t(cv.up_stop) ? cv.up_words : words;
      }
    }
    run.out_stride = DEC_TOKENS_BYTES + uint64_t(words) * 4;
  }
  const bool expert_major = num_images > 1 && debug_stop == 0 && NUM_MOE_BLOCKS > 0;
  const uint32_t per_group = expert_major ? uint32_t(MAX_GROUP) : num_images;

group_loop:
  for (uint32_t g0 = 0; g0 < num_images; g0 += per_group) {
#pragma HLS LOOP_TRIPCOUNT min = 1 max = MAX_IMAGES / MAX_GROUP
    const uint32_t last = num_images - g0 < per_group ? num_images : g0 + per_group;
    run_images(bundle, images, output, scratch, maps, run, g0, last, expert_major, buf_a, buf_b,
               lane, lin_state);
  }
  return STATUS_OK;
}
