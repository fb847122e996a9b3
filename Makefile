# edgemoe — set-up, tests, docs, demo. `make demo` and `make test` need only Python 3.11+ and g++.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HLS_SOURCES := $(shell find hls sim/csrc -name '*.h' -o -name '*.cpp' 2>/dev/null)

.PHONY: all venv test lint format demo demo-video docs clean hls bitstream rtl-test

all: test

# The venv is rebuilt when the dependency pins change. The hls4ml wheel is installed
# without its dependencies: we only use the ap_types headers it ships.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,docs]'
	$(BIN)/pip install --quiet --no-deps hls4ml==1.3.0
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/lint_imports.py
	@if [ -n "$(HLS_SOURCES)" ]; then $(BIN)/clang-format --dry-run -Werror $(HLS_SOURCES); fi

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	@if [ -n "$(HLS_SOURCES)" ]; then $(BIN)/clang-format -i $(HLS_SOURCES); fi

test: lint docs
	$(BIN)/python -m pytest -q

# The documentation site (docs/, MyST Markdown): every warning is an error.
DOCS_BUILD ?= build/docs
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs $(DOCS_BUILD)
	@echo "docs: $(DOCS_BUILD)/index.html"

# The default config's sample scene through the driver + virtual board (C-sim), checked vs torch.
demo: $(STAMP)
	$(BIN)/edgemoe run --backend csim --check --out demo-out --force

# A seeded procedural drive (4 s at 10 fps, the default config's resolution) through the
# driver + virtual board (C-sim), semseg and depth alternating frame by frame, 16 frames
# per call: demo-out/drive.mp4 (input | task map, captioned) and demo-out/drive.json.
# The video extra (imageio, imageio-ffmpeg) is part of the dev install the stamp makes.
demo-video: $(STAMP)
	$(BIN)/python scripts/drive_video.py demo-out/drive-frames --seconds 4 --fps 10 --seed 0
	time $(BIN)/edgemoe run --video demo-out/drive-frames --backend csim --schedule alternate \
		--batch 16 --out demo-out/drive.mp4 --force

# ---- Vitis HLS: C-sim -> C-synthesis -> co-sim -> IP export, then the report check ----
# Needs the Xilinx tools on PATH (source <Xilinx>/Vitis/<version>/settings64.sh).
#   HLS_FLOW=classic  vitis_hls -f hls/run_hls.tcl                 (Vitis HLS 2023.2-2024.1)
#   HLS_FLOW=tcl      vitis-run --mode hls --tcl hls/run_hls.tcl   (same script, Vitis 2024.2+)
#   HLS_FLOW=unified  v++ -c / vitis-run --mode hls --config hls/hls_config.cfg
# e.g. `make hls HLS_STEPS="csynth export"` skips the C-sim and the slow co-sim.
# Co-simulation runs on HLS_COSIM_CONFIG (default m3vit-mini-long) in a project of its
# own, built from that config's generated parameter header, with HLS_COSIM_IMAGES images
# (default 2: the expert-major schedule; 1: image-major). m3vit-mini-long reaches what
# only the default build otherwise reaches: 101 rows per linear-unit pass, more than a
# weight tile's 96 bus words (a tile buffer is refilled in the pass right after its last
# read), and an expert queued over more than one expert chunk. It is small (dim 32,
# 2 blocks): about 74 k cycles for two images by `edgemoe estimate`, about 3x m3vit-mini's
# one image. The default build's RTL would take hours per image in the simulator:
# HLS_COSIM_CONFIG=m3vit-tiny-128x256 opts in to co-simulating it (in its own project,
# with HLS_TB_IMAGES images).
HLS_FLOW ?= classic
HLS_STEPS ?= csim csynth cosim export
HLS_CLOCK_NS ?= 3.333
HLS_DEFAULT_CONFIG := m3vit-tiny-128x256
HLS_COSIM_CONFIG ?= m3vit-mini-long
HLS_COSIM_IMAGES ?= 2
HLS_COSIM_BUILD ?= build/hls_cosim
HLS_COSIM_SELF = $(filter $(HLS_DEFAULT_CONFIG),$(HLS_COSIM_CONFIG))
HLS_MAIN_STEPS = $(if $(HLS_COSIM_SELF),$(HLS_STEPS),$(filter-out cosim,$(HLS_STEPS)))
# The testbench (hls/tb/tb_top.cpp) runs HLS_TB_IMAGES seeded images of the default
# build (1: the image-major schedule; 2 or more: expert-major) and compares with the
# golden model bit for bit; its files come from edgemoe.sim.tbdata.
HLS_TB_DIR ?= build/hls_tb
HLS_TB_IMAGES ?= 1
HLS_TB_FILES = $(abspath $(HLS_TB_DIR))
HLS_TB_ARGV ?= $(HLS_TB_FILES)/bundle.bin $(HLS_TB_FILES)/images.bin $(HLS_TB_FILES)/output.bin \
	0 $(HLS_TB_IMAGES) 0 $(HLS_TB_FILES)/expected.bin
HLS_TB_DATA = $(if $(filter csim,$(HLS_MAIN_STEPS))$(filter cosim,$(HLS_MAIN_STEPS)),\
	$(BIN)/python -m edgemoe.sim.tbdata --out $(HLS_TB_DIR) --images $(HLS_TB_IMAGES))
HLS_BUILD ?= build/hls
HLS_UNIFIED_DIR ?= build/hls_unified/edgemoe_top
HLS_ENV = EDGEMOE_HLS_STEPS="$(HLS_MAIN_STEPS)" EDGEMOE_HLS_BUILD="$(abspath $(HLS_BUILD))" \
	EDGEMOE_HLS_CLOCK_NS="$(HLS_CLOCK_NS)" EDGEMOE_TB_ARGV="$(HLS_TB_ARGV)" \
	EDGEMOE_COSIM_IMAGES=$(HLS_TB_IMAGES)
# The co-sim project: its own parameter header and testbench files, csynth + cosim.
HLS_COSIM_FILES = $(abspath $(HLS_COSIM_BUILD))/tb
HLS_COSIM_ARGV = $(HLS_COSIM_FILES)/bundle.bin $(HLS_COSIM_FILES)/images.bin \
	$(HLS_COSIM_FILES)/output.bin 0 $(HLS_COSIM_IMAGES) 0 $(HLS_COSIM_FILES)/expected.bin
HLS_COSIM_ENV = EDGEMOE_HLS_STEPS="csynth cosim" EDGEMOE_HLS_BUILD="$(abspath $(HLS_COSIM_BUILD))" \
	EDGEMOE_HLS_CLOCK_NS="$(HLS_CLOCK_NS)" EDGEMOE_TB_ARGV="$(HLS_COSIM_ARGV)" \
	EDGEMOE_PARAMS_HEADER="$(abspath $(HLS_COSIM_BUILD))/params.h" \
	EDGEMOE_COSIM_IMAGES=$(HLS_COSIM_IMAGES)
HLS_COSIM_TOOL = $(if $(filter classic,$(HLS_FLOW)),vitis_hls -f,vitis-run --mode hls --tcl)
define hls_cosim
	mkdir -p $(HLS_COSIM_BUILD)
	$(BIN)/python -m edgemoe.host.export.hls_params --config $(HLS_COSIM_CONFIG) \
		--out $(HLS_COSIM_BUILD)/params.h
	$(BIN)/python -m edgemoe.sim.tbdata --out $(HLS_COSIM_FILES) --config $(HLS_COSIM_CONFIG) \
		--images $(HLS_COSIM_IMAGES)
	cd $(HLS_COSIM_BUILD) && $(HLS_COSIM_ENV) $(HLS_COSIM_TOOL) $(CURDIR)/hls/run_hls.tcl
endef
HLS_COSIM = $(if $(filter cosim,$(HLS_STEPS)),$(if $(HLS_COSIM_SELF),,$(hls_cosim)))
HLS_CHECK = $(PYTHON) scripts/check_hls_reports.py
hls_need = @command -v $(1) >/dev/null 2>&1 || { echo "make hls: $(1) not found on PATH \
	(source <Xilinx>/Vitis/<version>/settings64.sh, or pick HLS_FLOW=classic|tcl|unified)" >&2; exit 1; }
vitis_run = cd hls && vitis-run --mode hls --$(1) --config hls_config.cfg \
	--work_dir $(abspath $(HLS_UNIFIED_DIR))$(if $(2),$(if $(HLS_TB_ARGV), "--hls.$(1).argv=$(HLS_TB_ARGV)"))

hls: $(STAMP)
ifeq ($(HLS_FLOW),classic)
	$(call hls_need,vitis_hls)
	$(HLS_TB_DATA)
	mkdir -p $(HLS_BUILD)
	cd $(HLS_BUILD) && $(HLS_ENV) vitis_hls -f $(CURDIR)/hls/run_hls.tcl
	$(if $(filter csynth cosim export,$(HLS_MAIN_STEPS)),$(HLS_CHECK) $(HLS_BUILD)/edgemoe_top --clock-ns $(HLS_CLOCK_NS))
	$(HLS_COSIM)
else ifeq ($(HLS_FLOW),tcl)
	$(call hls_need,vitis-run)
	$(HLS_TB_DATA)
	mkdir -p $(HLS_BUILD)
	cd $(HLS_BUILD) && $(HLS_ENV) vitis-run --mode hls --tcl $(CURDIR)/hls/run_hls.tcl
	$(if $(filter csynth cosim export,$(HLS_MAIN_STEPS)),$(HLS_CHECK) $(HLS_BUILD)/edgemoe_top --clock-ns $(HLS_CLOCK_NS))
	$(HLS_COSIM)
else ifeq ($(HLS_FLOW),unified)
	$(call hls_need,vitis-run)
	$(if $(filter csynth,$(HLS_STEPS)),$(call hls_need,v++))
	$(HLS_TB_DATA)
	mkdir -p $(HLS_UNIFIED_DIR)
	$(if $(filter csim,$(HLS_MAIN_STEPS)),$(call vitis_run,csim,argv))
	$(if $(filter csynth,$(HLS_MAIN_STEPS)),cd hls && v++ -c --mode hls --config hls_config.cfg --work_dir $(abspath $(HLS_UNIFIED_DIR)))
	$(if $(filter cosim,$(HLS_MAIN_STEPS)),$(call vitis_run,cosim,argv))
	$(if $(filter export,$(HLS_MAIN_STEPS)),$(call vitis_run,package))
	$(if $(filter csynth cosim export,$(HLS_MAIN_STEPS)),$(HLS_CHECK) $(HLS_UNIFIED_DIR) --clock-ns $(HLS_CLOCK_NS))
	$(HLS_COSIM)
else
	@echo "make hls: unknown HLS_FLOW=$(HLS_FLOW) (use classic, tcl or unified)" >&2; exit 1
endif

# ---- Vivado: the exported IP -> ZCU104 block design -> edgemoe.bit + edgemoe.hwh ----
# Needs vivado on PATH (same settings64.sh). The IP comes from `make hls` (run first when
# missing, C-synthesis and export only: a bitstream never waits on a co-simulation);
# timing below zero fails the build. BUNDLE=path/to/bundle.bin is copied beside.
VIVADO_BUILD ?= build/vivado
OVERLAY_DIR ?= build/overlay
VIVADO_JOBS ?= 4
PL_MHZ ?= 300
BUNDLE ?=
ifeq ($(HLS_FLOW),unified)
HLS_IP_REPO ?= $(HLS_UNIFIED_DIR)/hls/impl/ip
else
HLS_IP_REPO ?= $(HLS_BUILD)/edgemoe_top/solution1/impl/ip
endif

$(HLS_IP_REPO)/component.xml:
	$(MAKE) hls HLS_STEPS="csynth export"

bitstream: $(HLS_IP_REPO)/component.xml
	@command -v vivado >/dev/null 2>&1 || { echo "make bitstream: vivado not found on PATH \
	(source <Xilinx>/Vivado/<version>/settings64.sh)" >&2; exit 1; }
	mkdir -p $(VIVADO_BUILD)
	cd $(VIVADO_BUILD) && EDGEMOE_IP_REPO="$(abspath $(HLS_IP_REPO))" \
		EDGEMOE_VIVADO_BUILD="$(abspath $(VIVADO_BUILD))" EDGEMOE_OVERLAY_DIR="$(abspath $(OVERLAY_DIR))" \
		EDGEMOE_PL_MHZ=$(PL_MHZ) EDGEMOE_JOBS=$(VIVADO_JOBS) \
		vivado -mode batch -nojournal -log vivado.log -source $(CURDIR)/scripts/vivado/build_overlay.tcl
	$(if $(BUNDLE),cp $(BUNDLE) $(OVERLAY_DIR)/)
	@echo "overlay: $(OVERLAY_DIR) (edgemoe.bit, edgemoe.hwh$(if $(BUNDLE), $(notdir $(BUNDLE))))"

# ---- cocotb bench (sim/rtl): the transaction-level shell; RTL_DUT=rtl for Vitis's Verilog ----
RTL_DUT ?= shell
rtl-test: $(STAMP)
	$(BIN)/python -m edgemoe.sim.rtl.runner --dut $(RTL_DUT)

clean:
	rm -rf $(VENV) build *.egg-info demo-out
