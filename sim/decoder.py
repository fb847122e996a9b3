"""Fidelity of the integer task decoder (:meth:`edgemoe.sim.golden.Golden.decode`).

Three task outputs of the same images, each finished by the host's resizes
(:func:`edgemoe.models.heads.pup_tail_np`) where it ends in logits:

- ``torch``: the float model end to end;
- ``host``: golden's backbone tokens through the float host decoder
  (:func:`edgemoe.models.heads.task_head_np`, i.e. ``pup_tail_np`` of
  ``pup_front_np``), what the run pipeline computes today;
- ``golden``: golden's backbone tokens through the integer decoder.

The task metric (mIoU for a class task, abs_rel for depth) of each against the
labels; the decoder's own error is ``golden`` against ``host`` (the same tokens),
the whole datapath's ``golden`` against ``torch``. Without labels the float
outputs stand in for them, as :mod:`edgemoe.host.app.fidelity` does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edgemoe.host.contracts.images import to_patches
from edgemoe.host.driver.backends import Workload
from edgemoe.models.config import ModelConfig
from edgemoe.models.heads import host_params, pup_front_np, pup_params, pup_tail_np
from edgemoe.models.metrics import confusion, depth_metrics, semseg_metrics

from .golden import Golden


@dataclass(frozen=True)
class DecoderFidelity:
    """The integer decoder of one task against float, on a batch of images.

    Attributes
    ----------
    task : str
    images : int
    metric : str
        ``miou`` (class tasks) or ``abs_rel`` (depth).
    torch, host, golden : float
        The metric of each output (see the module docstring) against the labels.
    logits_rel_rms : float
        ``||golden - float||₂ / ||float||₂`` of the decoder's logits, the float
        decoder (:func:`edgemoe.models.heads.pup_front_np`) run on golden's tokens.
    logits_rel_rms_torch : float
        The same against the float decoder on torch's tokens (the whole datapath).
    saturations : int
        Values saturated in the integer decoder, plus decoder tensors saturated at export.
    seconds_per_image : float
        Wall time of golden's decoder call per image.
    """

    task: str
    images: int
    metric: str
    torch: float
    host: float
    golden: float
    logits_rel_rms: float
    logits_rel_rms_torch: float
    saturations: int
    seconds_per_image: float

    @property
    def delta_torch(self) -> float:
        """``|metric(golden) - metric(torch)|``."""
        return abs(self.golden - self.torch)

    @property
    def delta_host(self) -> float:
        """``|metric(golden) - metric(host)|``: the integer decoder's own change."""
        return abs(self.golden - self.host)

    def to_dict(self) -> dict:
        return dict(self.__dict__, delta_torch=self.delta_torch, delta_host=self.delta_host)


def _rel_rms(ref: np.ndarray, x: np.ndarray) -> float:
    den = float(np.linalg.norm(ref))
    return float(np.linalg.norm(x - ref)) / den if den else float(np.linalg.norm(x))


def task_metric(cfg: ModelConfig, task: str, out: np.ndarray, label: np.ndarray) -> float:
    """mIoU (class tasks, over the classes present) or abs_rel (depth) of task outputs
    ``(B, C, H, W)`` against ``label`` (``(B, H, W)``; class ids, or metres)."""
    spec = cfg.task_spec(task)
    if spec.kind == "classes":
        conf = confusion(out.argmax(1), label, spec.channels)
        return semseg_metrics(conf, spec.classes or tuple(map(str, range(spec.channels))))["miou"]
    return depth_metrics(out[:, 0], label)["abs_rel"]


def measure_decoder(
    wl: Workload, images: np.ndarray, task: str, label: np.ndarray | None = None
) -> DecoderFidelity:
    """The integer decoder of ``task`` against float on ``images`` (B, H, W, 3) uint8.

    Parameters
    ----------
    wl : Workload
        A float model (``wl.model``) and its profile; the task's head is ``pup``.
    images : numpy.ndarray
        The images.
    task : str
        The task.
    label : numpy.ndarray, optional
        Per-pixel labels (class ids with -1 ignored, or depth in metres, 0 invalid);
        without, the float model's own prediction stands in for them.
    """
    import torch

    from edgemoe.models.m3vit import normalize

    cfg = wl.cfg
    spec = cfg.task_spec(task).head
    hp = host_params(wl.state, cfg)
    with torch.no_grad():
        x = normalize(images, cfg)
        t_tokens = wl.model.backbone(x, task)
        ref = wl.model.task_output(t_tokens, task).numpy()
    golden = Golden(wl.quantized)
    raw = golden.run(to_patches(images, cfg), task).tokens
    tokens = wl.profile.act.to_float(raw)
    t0 = time.perf_counter()
    dec = golden.decode(raw, task)
    seconds = time.perf_counter() - t0
    logits = golden.logits_to_float(dec.logits)
    out = pup_tail_np(logits, spec, cfg)
    *norm, fused = pup_params(hp, task, cfg)
    f_logits = pup_front_np(tokens, *norm, fused, spec, cfg)
    host = pup_tail_np(f_logits, spec, cfg)  # = task_head_np on golden's tokens
    t_logits = pup_front_np(t_tokens.double().numpy(), *norm, fused, spec, cfg)
    if label is None:
        label = ref.argmax(1) if cfg.task_spec(task).kind == "classes" else ref[:, 0]
    sat = sum(dec.saturations.values()) + sum(
        t.saturated for t in wl.quantized.report.tensors if t.name.startswith(f"decoders.{task}.")
    )
    return DecoderFidelity(
        task,
        len(images),
        "miou" if cfg.task_spec(task).kind == "classes" else "abs_rel",
        task_metric(cfg, task, ref, label),
        task_metric(cfg, task, host, label),
        task_metric(cfg, task, out, label),
        _rel_rms(f_logits, logits),
        _rel_rms(t_logits, logits),
        sat,
        seconds / len(images),
    )
