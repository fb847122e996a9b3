// Testbench of the top function: runs the kernel on files and writes its output.
//
// Usage: tb_top BUNDLE.bin IMAGES.bin OUTPUT.bin TASK NUM_IMAGES DEBUG_STOP [EXPECTED.bin]
// IMAGES.bin holds uint8 patch-major images; OUTPUT.bin receives the raw int32 output
// buffer. With EXPECTED.bin (int32, e.g. from the golden model), the testbench compares
// bit for bit and returns 1 on a mismatch -- the form Vitis csim/cosim expects.
// Prints the status code and the DDR bytes per bundle.
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

/// Word-aligned copy of a byte buffer, padded to whole bus words.
static std::vector<word_t> to_words(const std::vector<unsigned char>& bytes) {
  std::vector<word_t> w((bytes.size() + WORD_BYTES - 1) / WORD_BYTES + 1, word_t(0));
  memcpy(w.data(), bytes.data(), bytes.size());
  return w;
}

int main(int argc, char** argv) {
  if (argc < 7) {
    fprintf(stderr, "usage: tb_top BUNDLE IMAGES OUTPUT TASK NUM_IMAGES DEBUG_STOP [EXPECTED]\n");
    return 2;
  }
  std::vector<word_t> bundle = to_words(read_file(argv[1]));
  std::vector<word_t> images = to_words(read_file(argv[2]));
  const uint32_t task = strtoul(argv[4], 0, 10);
  const uint32_t num_images = strtoul(argv[5], 0, 10);
  const uint32_t debug_stop = strtoul(argv[6], 0, 10);
  const size_t per_image = size_t(NUM_TOKENS) * MAX_STAGE_WIDTH * 4;
  const size_t images_in_buffer = num_images ? num_images : 1;
  std::vector<word_t> output(images_in_buffer * per_image / WORD_BYTES + 1, word_t(0));
  // expert-major calls park up to MAX_BATCH images in scratch (edgemoe.host.scratch)
  const size_t group = images_in_buffer < size_t(MAX_BATCH) ? images_in_buffer : MAX_BATCH;
  std::vector<word_t> scratch(group * SCRATCH_SLOT / WORD_BYTES + 1, word_t(0));

  const uint32_t status = edgemoe_top(bundle.data(), images.data(), output.data(), scratch.data(),
                                      task, num_images, debug_stop);
  const DdrCounters& c = ddr_counters();
  printf("status %u\n", status);
  printf("ddr_read weights %llu images %llu output %llu scratch %llu\n",
         (unsigned long long)c.read[0], (unsigned long long)c.read[1],
         (unsigned long long)c.read[2], (unsigned long long)c.read[3]);
  printf("ddr_written weights %llu images %llu output %llu scratch %llu\n",
         (unsigned long long)c.written[0], (unsigned long long)c.written[1],
         (unsigned long long)c.written[2], (unsigned long long)c.written[3]);

  // a whole run leaves num_images x tokens x dim words (expert-major calls also park x
  // there on the way); a debug stop writes just its stage
  const size_t out_bytes = status == STATUS_OK && debug_stop == 0
                               ? size_t(num_images) * NUM_TOKENS * EMBED_DIM * 4
                               : size_t(c.written[PORT_OUTPUT]);
  FILE* f = fopen(argv[3], "wb");
  if (!f || fwrite(output.data(), 1, out_bytes, f) != out_bytes) {
    fprintf(stderr, "cannot write %s\n", argv[3]);
    return 2;
  }
  fclose(f);
  if (argc > 7) {
    const std::vector<unsigned char> expected = read_file(argv[7]);
    if (expected.size() != out_bytes || memcmp(expected.data(), output.data(), out_bytes) != 0) {
      printf("MISMATCH against %s\n", argv[7]);
      return 1;
    }
    printf("bit-exact against %s\n", argv[7]);
  }
  return 0;
}
