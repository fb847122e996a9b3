"""Fidelity of a fixed-point backend to the float model on trained weights (issue 14).

Tokens (rel_rms, cosine), routing agreement, saturations, and the task metrics
after the host's final norm and light head: mIoU for class tasks, abs_rel for
scalar (depth) tasks. With ground truth, ``task_delta`` is the change of the
metric, ``|metric(fixed, gt) - metric(float, gt)|``; without it, the float
prediction stands in for the ground truth, which measures the disagreement
itself (``1 - mIoU(fixed, float)``, ``abs_rel(fixed, float)``): it bounds the
change on any labels the float model gets right, and is the stricter number.

Here too: the agreement metrics of two runs (:func:`compare`) and the one fidelity
rule (:func:`budget_misses`) that ``verify``, ``run --check`` and :class:`Fidelity`
apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.driver.backends import RunOutput, Workload, get_backend
from edgemoe.host.export.quantize import LOG2E
from edgemoe.models.config import ModelConfig
from edgemoe.pipeline import Engine, TaskCall


@dataclass(frozen=True)
class PairMetrics:
    """Agreement of backend ``b`` with reference ``a`` on the final backbone output."""

    max_abs: float
    rel_rms: float
    cosine: float
    routing_agreement: float
    routing_decisions: int
    routing_mismatches: int
    #: rel_rms and cosine over the tokens whose expert sets agree in every MoE block
    #: (:func:`same_route`): what the rel_rms and cosine budgets apply to
    rel_rms_same_route: float = 0.0
    cosine_same_route: float = 1.0

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


def same_route(a: list[np.ndarray], b: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Tokens (``shape``: the tokens' leading axes) whose chosen expert sets agree in
    every MoE block; all of them where there is no routing (or it was not recorded,
    as :func:`routing` reads it)."""
    mask = np.ones(shape, dtype=bool)
    if not a or not b:
        return mask
    for x, y in zip(a, b, strict=True):
        mask &= (x == y).all(-1).reshape(shape)
    return mask


def route_budgeted(
    ref: np.ndarray,
    out: np.ndarray,
    routes: tuple[list[np.ndarray], list[np.ndarray]] | None,
    every: tuple[float, float],
) -> tuple[float, float]:
    """rel_rms and cosine of ``out`` against ``ref`` over the tokens whose expert sets
    agree in every MoE block. A token that takes another expert set (a near-tie gate)
    has a different output altogether: it is budgeted by the routing agreement, not by
    rel_rms and cosine, which budget the arithmetic. ``every``: the two over all tokens,
    returned as they are where every token routes alike (or there are no ``routes``)."""
    keep = np.ones(ref.shape[:-1], bool) if routes is None else same_route(*routes, ref.shape[:-1])
    if keep.all():
        return every
    return rel_rms(ref[keep], out[keep]), cosine(ref[keep], out[keep])


def compare(ref: RunOutput | TaskCall, out: RunOutput | TaskCall) -> PairMetrics:
    agree, n, miss = routing(ref.routes, out.routes)
    rr, cs = rel_rms(ref.tokens, out.tokens), cosine(ref.tokens, out.tokens)
    rr_same, cs_same = route_budgeted(ref.tokens, out.tokens, (ref.routes, out.routes), (rr, cs))
    return PairMetrics(
        max_abs=float(np.abs(out.tokens - ref.tokens).max()),
        rel_rms=rr,
        cosine=cs,
        routing_agreement=agree,
        routing_decisions=n,
        routing_mismatches=miss,
        rel_rms_same_route=rr_same,
        cosine_same_route=cs_same,
    )


def budget_misses(
    budgets: dict[str, float],
    rel_rms: float,
    cosine: float,
    routing_agreement: float | None = None,
    task_delta: float | None = None,
    saturations: int = 0,
) -> list[str]:
    """The fidelity rule: the budgets a fixed-point result misses against float.

    The one rule ``verify``, ``run --check`` and :class:`Fidelity` apply: ``rel_rms``
    and ``cosine`` of the compared values, the routing agreement of the MoE blocks
    (where there is routing: None for a task output), the task-metric delta where the
    budgets name one, and zero saturation.

    Returns
    -------
    list of str
        Readable misses, empty when every budget is met.
    """
    missed = []
    if rel_rms > budgets["rel_rms"]:
        missed.append(f"rel_rms {rel_rms:.3g} > {budgets['rel_rms']}")
    if cosine < budgets["cosine"]:
        missed.append(f"cosine {cosine:.7f} < {budgets['cosine']}")
    if routing_agreement is not None and routing_agreement < budgets["routing_agreement"]:
        missed.append(f"routing_agreement {routing_agreement:.4f} < {budgets['routing_agreement']}")
    if task_delta is not None and "task_metric_delta" in budgets:
        if task_delta > budgets["task_metric_delta"]:
            missed.append(f"task delta {task_delta:.4g} > {budgets['task_metric_delta']}")
    if saturations:
        missed.append(f"{saturations} saturation(s)")
    return missed


def within_budget(m: PairMetrics, budgets: dict[str, float]) -> list[str]:
    """The budgets ``m`` misses (:func:`budget_misses`), empty when all are met: rel_rms
    and cosine over the tokens that route alike (:func:`route_budgeted`)."""
    return budget_misses(budgets, m.rel_rms_same_route, m.cosine_same_route, m.routing_agreement)


@dataclass(frozen=True)
class Fidelity:
    """One (model, profile, task, images) comparison of a backend with float.

    Attributes
    ----------
    rel_rms, cosine : float
        Final backbone tokens, all of them.
    routing_agreement : float
        (token, MoE block) pairs with the same expert set.
    saturations : int
        Values saturated in the datapath plus weight values saturated at export.
    task_delta : float
        See the module docstring (against ground truth when given).
    """

    rel_rms: float
    cosine: float
    routing_agreement: float
    routing_mismatches: int
    saturations: int
    task_delta: float
    #: over the tokens that route alike (:func:`route_budgeted`): what the budgets apply to
    rel_rms_same_route: float = 0.0
    cosine_same_route: float = 1.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def missed(self, budgets: dict[str, float]) -> list[str]:
        """The budgets this misses (:func:`budget_misses`), as readable strings: rel_rms
        and cosine over the tokens that route alike (:func:`route_budgeted`)."""
        return budget_misses(
            budgets,
            self.rel_rms_same_route,
            self.cosine_same_route,
            self.routing_agreement,
            self.task_delta,
            self.saturations,
        )


def miou(pred: np.ndarray, gt: np.ndarray, classes: int, ignore: int = -1) -> float:
    """Mean IoU over the classes present in ``pred`` or ``gt`` (``ignore`` pixels left out)."""
    valid = gt != ignore
    ious = []
    for c in range(classes):
        p, g = (pred == c) & valid, (gt == c) & valid
        union = int((p | g).sum())
        if union:
            ious.append(int((p & g).sum()) / union)
    return float(np.mean(ious)) if ious else 1.0


def abs_rel(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean ``|pred - gt| / gt`` over pixels with ``gt > 0`` (0 marks invalid depth)."""
    valid = gt > 0
    if not valid.any():
        return 0.0
    return float(np.mean(np.abs(pred[valid] - gt[valid]) / gt[valid]))


def task_delta(
    cfg: ModelConfig, task: str, ref: np.ndarray, out: np.ndarray, gt: np.ndarray | None = None
) -> float:
    """Metric change of ``out`` vs ``ref`` (task outputs (B, C, H, W)); see the module doc."""
    classes = ref.shape[1]
    if cfg.task_spec(task).kind == "classes":
        p_ref, p_out = ref.argmax(1), out.argmax(1)
        if gt is None:
            return 1.0 - miou(p_out, p_ref, classes)
        return abs(miou(p_out, gt, classes) - miou(p_ref, gt, classes))
    d_ref, d_out = ref[:, 0], out[:, 0]
    if gt is None:
        return abs_rel(d_out, d_ref)
    return abs(abs_rel(d_out, gt) - abs_rel(d_ref, gt))


def measure(
    wl: Workload,
    images: np.ndarray,
    task: str,
    backend: str = "golden",
    gt: np.ndarray | None = None,
    ref: TaskCall | None = None,
) -> tuple[Fidelity, TaskCall, TaskCall]:
    """Run torch and ``backend`` on ``images`` through the run path's engines (every
    boundary recorded, the task's head on the host) and compare; returns both calls too."""
    if ref is None:
        ref = Engine(wl, DEFAULT_TILING, get_backend("torch")).call(images, task, record=True)
    engine = Engine(wl, DEFAULT_TILING, get_backend(backend), max_images=len(images))
    out = engine.call(images, task, record=True)
    m = compare(ref, out)
    delta = task_delta(wl.cfg, task, ref.values, out.values, gt)
    sat = sum(out.saturations.values()) + wl.quantized.report.saturated
    return (
        Fidelity(
            m.rel_rms,
            m.cosine,
            m.routing_agreement,
            m.routing_mismatches,
            sat,
            delta,
            m.rel_rms_same_route,
            m.cosine_same_route,
        ),
        ref,
        out,
    )


def routing_margins(wl: Workload, images: np.ndarray) -> dict:
    """Top-k margins against the gate's fixed-point error, over every task and MoE block.

    For each (image, token, MoE block, task) decision the margin is the gap between
    the k-th and (k+1)-th float gate logit in base-2 units (what the hardware
    compares). The gate error, golden minus float, splits into **upstream** (golden's
    LN2 output through float gate weights, minus float) and the gate path's **own**
    (golden minus that: gate-weight and logit rounding). A decision is *within the
    error* when its margin is below the total error of the two logits it compares
    plus one logit LSB (equal raw logits tie, the lower index wins).

    Returns
    -------
    dict
        ``decisions``, margin and error percentiles, ``within_error``, ``flips``,
        ``flip_margins``, ``flips_outside_error`` (0 when every flip is a near-tie);
        keys starting with ``_`` hold the raw arrays.
    """
    cfg, k = wl.cfg, wl.cfg.top_k
    lsb = wl.profile.attn_score.lsb  # one logit LSB: equal raw logits tie (lower index wins)
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("margin", "total", "own", "up", "near", "flip", "flip_margin", "flip_near")
    }
    for task in cfg.task_names:
        ref = get_backend("torch").run(wl, images, task, record=True)
        out = get_backend("golden").run(wl, images, task, record=True)
        for b in cfg.moe_blocks:
            lf = ref.stages[f"block{b}.gate"] * LOG2E  # base-2 float logits
            lg = out.stages[f"block{b}.gate"] * LOG2E
            w = wl.state[f"blocks.{b}.mlp.gate.{task}.w_gate"].astype(np.float64)
            lg_float_gate = out.stages[f"block{b}.ln2"] @ w * LOG2E
            srt = np.sort(lf, axis=-1)[..., ::-1]
            m = srt[..., k - 1] - srt[..., k]
            err = np.abs(lg - lf)
            # the two logits that decide: the k-th and (k+1)-th of float
            order = np.argsort(-lf, axis=-1, kind="stable")
            pair = np.take_along_axis(err, order[..., k - 1 : k + 1], axis=-1).sum(-1)
            flip = (ref.stages[f"block{b}.route"] != out.stages[f"block{b}.route"]).any(-1)
            near = m < pair + lsb
            for key, v in (
                ("margin", m),
                ("total", err),
                ("own", np.abs(lg - lg_float_gate)),
                ("up", np.abs(lg_float_gate - lf)),
                ("near", near),
                ("flip", flip),
                ("flip_margin", m[flip]),
                ("flip_near", near[flip]),
            ):
                parts[key].append(np.ravel(v))
    a = {k: np.concatenate(v) for k, v in parts.items()}
    margins, total_err, own_err, up_err = a["margin"], a["total"], a["own"], a["up"]
    pct = (50, 90, 99, 99.9)
    return {
        "decisions": int(margins.size),
        "margin_percentiles": {str(p): float(np.percentile(margins, p)) for p in (0.1, 1, 5, 50)},
        "margin_min": float(margins.min()),
        "gate_error_total": {str(p): float(np.percentile(total_err, p)) for p in pct},
        "gate_error_own": {str(p): float(np.percentile(own_err, p)) for p in pct},
        "gate_error_upstream": {str(p): float(np.percentile(up_err, p)) for p in pct},
        "gate_error_total_max": float(total_err.max()),
        "gate_error_own_max": float(own_err.max()),
        "within_error": int(a["near"].sum()),
        "within_own_error": int((margins < 2 * own_err.max()).sum()),
        "flips": int(a["flip"].sum()),
        "flip_margins": sorted(float(x) for x in a["flip_margin"]),
        "flips_outside_error": int((~a["flip_near"]).sum()),
        "_margins": margins,
        "_total_err": total_err,
        "_own_err": own_err,
    }
