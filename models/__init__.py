"""Float reference of M3ViT: configs, model, checkpoints, heads, ONNX export.

Names are imported lazily, so that ``edgemoe.models.config`` and
``edgemoe.models.heads`` stay usable without torch (on the board).
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import DEFAULT_CONFIG, HeadSpec, ModelConfig, list_configs, load_config

_LAZY = {
    "M3ViT": "m3vit",
    "init_weights": "m3vit",
    "normalize": "m3vit",
    "random_model": "m3vit",
    "topk_mask": "m3vit",
    "load_checkpoint": "checkpoint",
    "load_checkpoint_result": "checkpoint",
    "LoadResult": "checkpoint",
    "read_state_dict": "checkpoint",
    "save_sharded": "checkpoint",
    "export_onnx": "onnx_export",
    "bilinear_upsample_np": "heads",
    "layer_norm_np": "heads",
    "light_head_np": "heads",
    "pup_head_np": "heads",
    "pup_front_np": "heads",
    "pup_tail_np": "heads",
    "pup_params": "heads",
    "decoder_front_np": "heads",
    "task_head_np": "heads",
    "fold_decoder": "heads",
    "host_params": "heads",
    "host_param_names": "heads",
    "decoder_macs": "heads",
}

__all__ = ["DEFAULT_CONFIG", "HeadSpec", "ModelConfig", "list_configs", "load_config", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
