// Testbench of the top function: runs the kernel on files and writes its output.
//
// Usage: tb_top BUNDLE.bin IMAGES.bin OUTPUT.bin TASK NUM_IMAGES DEBUG_STOP [EXPECTED.bin]
// IMAGES.bin holds uint8 patch-major images; OUTPUT.bin receives what the kernel stored:
// [NUM_IMAGES][tokens][dim] int32 for a whole run, [NUM_IMAGES][tokens][stage width]
// for a debug stop (each image's rows gathered from its output region). With EXPECTED.bin (int32,
// e.g. from the golden model, in the same layout), the testbench compares every one of
// those bytes and returns 1 on a mismatch, on a size that differs, or on a status other
// than 0 -- the form Vitis csim/cosim expects. The byte count comes from the arguments,
// never from the C-sim counters (which count nothing in co-simulation), so every mode
// compares real bytes. Prints the status code and the DDR bytes per bundle (C-sim).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "edgemoe/edgemoe.h"

using namespace edgemoe;  // NOLINT

static std::vector<unsigned char> read_file(const char* path) {
  std::vector<unsigned char> v;
  FILE* f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  unsigned char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    v.insert(v.end(), buf, buf + n);
  }
  fclose(f);
  return v;
}

/// Word-aligned copy of a byte buffer, padded to whole bus words and to at least `depth`
/// words (the m_axi port's co-simulation depth, edgemoe/ddr.h).
static std::vector<word_t> to_words(const std::vector<unsigned char>& bytes, size_t depth) {
  size_t n = (bytes.size() + WORD_BYTES - 1) / WORD_BYTES + 1;
  n = n < depth ? depth : n;
  std::vector<word_t> w(n, word_t(0));
  memcpy(w.data(), bytes.data(), bytes.size());
  return w;
}

/// Words per token that a run with this debug stop stores (edgemoe.host.export.hls_params).
static int stage_width(uint32_t debug_stop) {
  if (debug_stop < 2) {
    return EMBED_DIM;  // a whole run, or the patch embedding
  }
  const int s = int(debug_stop - 2) % STAGES_PER_BLOCK;
  return s == STAGE_QKV ? 3 * EMBED_DIM : s == STAGE_GATE ? NUM_EXPERTS : EMBED_DIM;
}

int main(int argc, char** argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: tb_top BUNDLE IMAGES OUTPUT TASK NUM_IMAGES DEBUG_STOP [EXPECTED]\n");
    return 2;
  }
  std::vector<word_t> bundle = to_words(read_file(argv[1]), DEPTH_WEIGHTS);
  std::vector<word_t> images = to_words(read_file(argv[2]), DEPTH_IMAGES);
  const uint32_t task = strtoul(argv[4], 0, 10);
  const uint32_t num_images = strtoul(argv[5], 0, 10);
  const uint32_t debug_stop = strtoul(argv[6], 0, 10);
  const size_t per_image = size_t(COSIM_OUT_BYTES);  // the largest output region
  const size_t images_in_buffer = num_images ? num_images : 1;
  const size_t out_words = images_in_buffer * per_image / WORD_BYTES + 1;
  std::vector<word_t> output(out_words < DEPTH_OUTPUT ? DEPTH_OUTPUT : out_words, word_t(0));
  // expert-major calls park up to MAX_GROUP images in scratch (edgemoe.host.contracts.scratch)
  const size_t group = images_in_buffer < size_t(MAX_GROUP) ? images_in_buffer : MAX_GROUP;
  const size_t slots = group * SCRATCH_SLOT;  // or the decoder's two maps, if larger
  const size_t scratch_words =
      (slots > size_t(DEC_SCRATCH_BYTES) ? slots : size_t(DEC_SCRATCH_BYTES)) / WORD_BYTES + 1;
  std::vector<word_t> scratch(scratch_words < DEPTH_SCRATCH ? DEPTH_SCRATCH : scratch_words,
                              word_t(0));

  // maps is the scratch buffer again, as the host programs it (edgemoe.host.contracts.kernel)
  const uint32_t status = edgemoe_top(bundle.data(), images.data(), output.data(), scratch.data(),
                                      task, num_images, debug_stop, scratch.data());
  const DdrCounters& c = ddr_counters();
  printf("status %u\n", status);
  printf("ddr_read weights %llu images %llu output %llu scratch %llu maps %llu\n",
         (unsigned long long)c.read[PORT_WEIGHTS], (unsigned long long)c.read[PORT_IMAGES],
         (unsigned long long)c.read[PORT_OUTPUT], (unsigned long long)c.read[PORT_SCRATCH],
         (unsigned long long)c.read[PORT_MAPS]);
  printf("ddr_written weights %llu images %llu output %llu scratch %llu maps %llu\n",
         (unsigned long long)c.written[PORT_WEIGHTS], (unsigned long long)c.written[PORT_IMAGES],
         (unsigned long long)c.written[PORT_OUTPUT], (unsigned long long)c.written[PORT_SCRATCH],
         (unsigned long long)c.written[PORT_MAPS]);

  // A whole run leaves num_images x tokens x dim words (expert-major calls also park x
  // there on the way); a debug stop leaves its stage's rows at the start of each image's
  // output region of NUM_TOKENS x MAX_STAGE_WIDTH words.
  const int width = stage_width(debug_stop);
  const size_t row_bytes = size_t(width) * 4;
  // A task with M3ViT's decoder: each region holds the final tokens, then the logits
  // (edgemoe.host.contracts.decoder.output_words), all of which the testbench keeps.
  const DecTask& dtask = DECODER[task < uint32_t(NUM_TASKS) ? task : 0];
  const bool decodes = task < uint32_t(NUM_TASKS) && dtask.convs > 0 && debug_stop == 0;
  const size_t dec_bytes =
      decodes ? size_t(DEC_TOKENS_BYTES) + size_t(dtask.conv[dtask.convs - 1].out_words) * 4 : 0;
  const size_t region_bytes = decodes           ? dec_bytes
                              : debug_stop == 0 ? size_t(NUM_TOKENS) * EMBED_DIM * 4
                                                : size_t(NUM_TOKENS) * MAX_STAGE_WIDTH * 4;
  const size_t image_bytes = decodes ? dec_bytes : size_t(NUM_TOKENS) * row_bytes;
  const size_t out_bytes = status == STATUS_OK ? size_t(num_images) * image_bytes : 0;
  std::vector<unsigned char> stored(out_bytes);
  const unsigned char* raw = reinterpret_cast<const unsigned char*>(output.data());
tb_gather_images:
  for (size_t b = 0; b < (status == STATUS_OK ? size_t(num_images) : 0); ++b) {
    memcpy(stored.data() + b * image_bytes, raw + b * region_bytes, image_bytes);
  }
  FILE* f = fopen(argv[3], "wb");
  if (!f || fwrite(stored.data(), 1, out_bytes, f) != out_bytes) {
    fprintf(stderr, "cannot write %s\n", argv[3]);
    return 2;
  }
  fclose(f);
  if (argc > 7) {
    const std::vector<unsigned char> expected = read_file(argv[7]);
    if (status != STATUS_OK || out_bytes == 0 || expected.size() != out_bytes ||
        memcmp(expected.data(), stored.data(), out_bytes) != 0) {
      printf("MISMATCH against %s (%zu bytes expected, %zu stored)\n", argv[7], expected.size(),
             out_bytes);
      return 1;
    }
    printf("bit-exact against %s (%zu bytes)\n", argv[7], out_bytes);
  }
  return 0;
}
