// Umbrella header: the whole kernel library.
#ifndef EDGEMOE_EDGEMOE_H_
#define EDGEMOE_EDGEMOE_H_

#include "edgemoe/attention.h"
#include "edgemoe/banked.h"
#include "edgemoe/buffers.h"
#include "edgemoe/config.h"
#include "edgemoe/ddr.h"
#include "edgemoe/exp2.h"
#include "edgemoe/experts.h"
#include "edgemoe/fixed.h"
#include "edgemoe/gelu.h"
#include "edgemoe/lanes.h"
#include "edgemoe/layernorm.h"
#include "edgemoe/linear.h"
#include "edgemoe/moe.h"
#include "edgemoe/newton.h"
#include "edgemoe/park.h"
#include "edgemoe/scale.h"
#include "edgemoe/stages.h"

/// The top function (hls/src/edgemoe_top.cpp); the return value is a status code. `maps`
/// points at the scratch buffer again (the task decoder's feature maps, on their own master).
uint32_t edgemoe_top(const edgemoe::word_t* bundle, const edgemoe::word_t* images,
                     edgemoe::word_t* output, edgemoe::word_t* scratch, uint32_t task,
                     uint32_t num_images, uint32_t debug_stop, edgemoe::word_t* maps);

#endif  // EDGEMOE_EDGEMOE_H_
