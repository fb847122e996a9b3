"""Export one task of M3ViT (backbone, final norm, light head) to a single ONNX file.

:func:`export_backbone_onnx` exports the backbone alone (the tokens the
accelerator computes), for benchmarking against the other backends.

MoE blocks are exported on the dense path (every expert on every token, masked
by the top-k choice), which keeps the graph static; the top-k itself is the
rank-based :func:`~edgemoe.models.m3vit.topk_mask`, so ONNX keeps the
lower-index tie rule.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from .m3vit import M3ViT

ONNX_OPSET = 18
_FALLBACK_OPSET = 17

log = logging.getLogger(__name__)


class TaskModel(nn.Module):
    """``normalised image -> task output`` of one task, the unit that is exported."""

    def __init__(self, model: M3ViT, task: str | int) -> None:
        super().__init__()
        self.model = model
        self.task = model.cfg.task_names[model.cfg.task_id(task)]

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images, self.task)


class BackboneModel(TaskModel):
    """``normalised image -> backbone tokens (B, N, D)`` of one task (no final norm, no head)."""

    def forward(self, images: Tensor) -> Tensor:
        return self.model.backbone(images, self.task)


def export_onnx(model: M3ViT, task: str | int, path: str | Path, batch: int = 1) -> Path:
    """Write ``model``'s prediction of ``task`` to ``path`` as ONNX.

    Parameters
    ----------
    model : M3ViT
        Exported as is (its ``moe_dense`` flag is set for the export and restored).
    task : str or int
        Task name or id.
    path : str or pathlib.Path
        Output ``.onnx`` file; weights are embedded (one file).
    batch : int
        Static batch size of the input ``images`` ``(batch, C, H, W)``.

    Returns
    -------
    pathlib.Path
        ``path``. Input is named ``images``, output is named after the task.
    """
    return _export(TaskModel(model, task).eval(), path, batch)


def export_backbone_onnx(model: M3ViT, task: str | int, path: str | Path, batch: int = 1) -> Path:
    """Write ``model``'s backbone for ``task`` to ``path`` as ONNX (no final norm, no head).

    Parameters are those of :func:`export_onnx`; MoE blocks are exported on the
    dense path, so the graph computes every expert on every token.

    Returns
    -------
    pathlib.Path
        ``path``. Input is named ``images``, output ``tokens`` ``(batch, N, D)``.
    """
    return _export(BackboneModel(model, task).eval(), path, batch, output_name="tokens")


def _export(wrapper: TaskModel, path: str | Path, batch: int, output_name: str = "") -> Path:
    model = wrapper.model
    cfg = model.cfg
    example = (torch.zeros(batch, cfg.in_chans, *cfg.image_size),)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = {"input_names": ["images"], "output_names": [output_name or wrapper.task]}
    was_dense = model.moe_dense
    model.moe_dense = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    wrapper,
                    example,
                    str(out),
                    dynamo=True,
                    opset_version=ONNX_OPSET,
                    external_data=False,
                    verbose=False,
                    **names,
                )
            except Exception as e:  # the dynamo exporter is young; the TorchScript one is not
                log.info("dynamo ONNX export failed (%s); using the TorchScript exporter", e)
                torch.onnx.export(
                    wrapper, example, str(out), dynamo=False, opset_version=_FALLBACK_OPSET, **names
                )
    finally:
        model.moe_dense = was_dense
    return out
