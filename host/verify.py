"""Compare backends on one seeded workload: per-layer errors and final-output metrics."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.models.config import ModelConfig
from edgemoe.models.heads import light_head_np

from .backends import RunOutput, Workload


@dataclass(frozen=True)
class PairMetrics:
    """Agreement of backend ``b`` with reference ``a`` on the final backbone output."""

    max_abs: float
    rel_rms: float
    cosine: float
    routing_agreement: float
    routing_decisions: int
    routing_mismatches: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def rel_rms(ref: np.ndarray, x: np.ndarray) -> float:
    """``||x - ref||_2 / ||ref||_2``."""
    den = float(np.linalg.norm(ref))
    return float(np.linalg.norm(x - ref)) / den if den else float(np.linalg.norm(x))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(np.vdot(a.ravel(), b.ravel())) / (na * nb)


def routing(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[float, int, int]:
    """Fraction of (token, MoE block) whose chosen expert sets are identical."""
    if not a:
        return 1.0, 0, 0
    same = sum(int((x == y).all(-1).sum()) for x, y in zip(a, b, strict=True))
    total = sum(int(np.prod(x.shape[:-1])) for x in a)
    return same / total, total, total - same


def compare(ref: RunOutput, out: RunOutput) -> PairMetrics:
    agree, n, miss = routing(ref.routes, out.routes)
    return PairMetrics(
        max_abs=float(np.abs(out.tokens - ref.tokens).max()),
        rel_rms=rel_rms(ref.tokens, out.tokens),
        cosine=cosine(ref.tokens, out.tokens),
        routing_agreement=agree,
        routing_decisions=n,
        routing_mismatches=miss,
    )


def layer_table(outputs: dict[str, RunOutput]) -> list[dict]:
    """rel_rms (routes: agreement) at every recorded boundary, for every pair of backends.

    Columns are named ``"a-b"`` for each pair of :func:`pairs`, in the order the
    backends were given; ``a`` is the reference of its pair.
    """
    names = list(outputs)
    rows = []
    for stage in outputs[names[0]].stages:
        row: dict = {"stage": stage}
        for a, b in pairs(names):
            r, o = outputs[a].stages.get(stage), outputs[b].stages.get(stage)
            if r is None or o is None:
                continue
            if r.dtype == bool:
                row[f"{a}-{b}"] = float((o == r).all(-1).mean())
            else:
                row[f"{a}-{b}"] = rel_rms(r, o)
        rows.append(row)
    return rows


def pairs(names: list[str]) -> list[tuple[str, str]]:
    return list(itertools.combinations(names, 2))


def within_budget(m: PairMetrics, budgets: dict[str, float]) -> list[str]:
    """The budgets ``m`` misses, as readable strings (empty when all are met)."""
    missed = []
    if m.rel_rms > budgets["rel_rms"]:
        missed.append(f"rel_rms {m.rel_rms:.3g} > {budgets['rel_rms']}")
    if m.cosine < budgets["cosine"]:
        missed.append(f"cosine {m.cosine:.7f} < {budgets['cosine']}")
    if m.routing_agreement < budgets["routing_agreement"]:
        missed.append(
            f"routing_agreement {m.routing_agreement:.4f} < {budgets['routing_agreement']}"
        )
    return missed


def first_difference(a: RunOutput, b: RunOutput) -> str | None:
    """First layer boundary (in execution order) where two runs differ, else None.

    Both runs must have recorded their stages; the final output counts as the
    last boundary (``output``).
    """
    for stage, x in a.stages.items():
        y = b.stages.get(stage)
        if y is not None and not np.array_equal(x, y):
            return stage
    return None if np.array_equal(a.tokens, b.tokens) else "output"


def with_top_k(cfg: ModelConfig, top_k: int | None) -> ModelConfig:
    """``cfg`` with ``--top-k`` applied: checkpoints do not store ``top_k``, runs choose it."""
    if top_k is None:
        return cfg
    if not 1 <= top_k <= cfg.num_experts:
        raise EdgeMoeError(f"--top-k must be in 1..{cfg.num_experts} (num_experts of {cfg.name})")
    return cfg.replace(top_k=top_k)


def host_task_output(tokens: np.ndarray, state: dict, task: str, cfg: ModelConfig) -> np.ndarray:
    """What the host computes after the accelerator: the task's own final norm, its head."""
    return light_head_np(
        tokens,
        state[f"norms.{task}.weight"],
        state[f"norms.{task}.bias"],
        state[f"heads.{task}.weight"],
        state[f"heads.{task}.bias"],
        cfg,
    )


def task_output_check(
    wl: Workload, images: np.ndarray, task: str, outputs: dict[str, RunOutput]
) -> dict:
    """Each backend's tokens through the host's head against the float model's ``forward``.

    Returns
    -------
    dict
        ``norm`` and ``head`` (the parameters the host applied) and
        ``max_abs_vs_forward`` per backend: max |host(tokens) - model(images, task)|.
    """
    import torch

    from edgemoe.models.m3vit import normalize

    with torch.no_grad():
        ref = wl.model(normalize(images, wl.cfg), task).double().numpy()
    err = {
        n: float(np.abs(host_task_output(o.tokens, wl.state, task, wl.cfg) - ref).max())
        for n, o in outputs.items()
    }
    return {"norm": f"norms.{task}", "head": f"heads.{task}", "max_abs_vs_forward": err}
