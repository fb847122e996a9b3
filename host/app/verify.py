"""Compare backends on one seeded workload: per-layer errors and final-output metrics."""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.files import write_file_atomic, write_json_atomic
from edgemoe.host.app.args import (
    MAX_VERIFY_IMAGES,
    HelpFormatter,
    add_options,
    int_range,
    parse_task,
)
from edgemoe.host.app.fidelity import compare, rel_rms, within_budget
from edgemoe.host.app.inputs import load_image_folder
from edgemoe.host.app.outputs import check_output_file
from edgemoe.host.contracts.images import random_images, scene_images
from edgemoe.host.contracts.profile import load_profile
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.driver.backends import RunOutput, Workload, backends_help, get_backend
from edgemoe.models.config import ModelConfig, load_config
from edgemoe.pipeline import Engine, TaskCall, check_heads, float_workload, weight_source


def layer_table(outputs: dict[str, TaskCall]) -> list[dict]:
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


def first_difference(a: TaskCall | RunOutput, b: TaskCall | RunOutput) -> str | None:
    """First layer boundary (in execution order) where two runs differ, else None.

    Both runs must have recorded their stages; the final tokens count as the last
    backbone boundary (``output``), the decoder's logits as the last of all
    (``dec.logits``, where the datapath decodes the task).
    """
    for stage, x in a.stages.items():
        y = b.stages.get(stage)
        if y is not None and not np.array_equal(x, y):
            return stage
    if not np.array_equal(a.tokens, b.tokens):
        return "output"
    return None if same_logits(a, b) else "dec.logits"


def same_logits(a: TaskCall | RunOutput, b: TaskCall | RunOutput) -> bool:
    """Whether two runs' decoder logits are identical (both absent counts as identical)."""
    if a.logits is None or b.logits is None:
        return a.logits is None and b.logits is None
    return bool(np.array_equal(a.logits, b.logits))


def with_top_k(cfg: ModelConfig, top_k: int | None) -> ModelConfig:
    """``cfg`` with ``--top-k`` applied: checkpoints do not store ``top_k``, runs choose it."""
    if top_k is None:
        return cfg
    if not 1 <= top_k <= cfg.num_experts:
        raise EdgeMoeError(f"--top-k must be in 1..{cfg.num_experts} (num_experts of {cfg.name})")
    return cfg.replace(top_k=top_k)


def task_output_check(
    wl: Workload, images: np.ndarray, task: str, outputs: dict[str, TaskCall]
) -> dict:
    """Each backend's task output against the float model's ``forward``: its tokens
    through the host's head, or, where the datapath decodes the task, its decoder's
    logits through the host's resizes.

    Returns
    -------
    dict
        ``norm`` and ``head`` (the parameters applied) and ``max_abs_vs_forward`` per
        backend: max |output - model(images, task)|.
    """
    import torch

    from edgemoe.models.m3vit import normalize

    with torch.no_grad():
        ref = wl.model(normalize(images, wl.cfg), task).double().numpy()
    err = {n: float(np.abs(o.values - ref).max()) for n, o in outputs.items()}
    head = "decoders" if wl.cfg.task_spec(task).head.kind == "pup" else "heads"
    return {"norm": f"norms.{task}", "head": f"{head}.{task}", "max_abs_vs_forward": err}


def cmd_verify(args: argparse.Namespace) -> int:
    cfg = with_top_k(load_config(args.config), args.top_k)
    profile = load_profile(args.profile)
    task = parse_task(args.task, cfg)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if len(names) < 2:
        raise EdgeMoeError("--backends needs at least two backends, e.g. torch,golden")
    backends = [get_backend(n) for n in names]
    caps = {b.name: b.capabilities for b in backends}
    check_output_file(args.json, "--json")
    check_output_file(args.plot, "--plot", ".png")
    notices: list[str] = []
    source = weight_source(cfg, args.checkpoint, args.seed, args.random, notices=notices)
    wl, loaded = float_workload(cfg, profile, source)
    source = check_heads(source, wl, (), True)  # the datapath: untrained heads are labelled
    for n in notices + loaded:
        print(f"notice: {n}", file=sys.stderr)
    images, kind = verify_images(cfg, args)
    # the run path's engines: every layer boundary recorded, the task's head on the host
    outputs = {
        b.name: Engine(wl, DEFAULT_TILING, b, max_images=len(images)).call(
            images, task, record=True
        )
        for b in backends
    }

    table = layer_table(outputs)
    print(
        f"{cfg.name} / {profile.name} / task {task} / top_k {cfg.top_k} / {source.describe()} "
        f"/ {len(images)} image(s): {kind}"
    )
    _print_layer_table(table)

    result = {
        "config": cfg.name,
        "profile": profile.name,
        "task": task,
        "top_k": cfg.top_k,
        "seed": args.seed,
        "images": len(images),
        "image_kind": kind,
        "checkpoint": source.checkpoint,
        "weights": source.describe(),
        "trained_on": source.trained_on,
        "weight_saturations": wl.quantized.report.saturated if profile else 0,
        "seconds": {n: o.seconds for n, o in outputs.items()},
        "pairs": {},
        "layers": table,
    }
    failed = False
    print()
    budgets = profile.budgets_for(source.checkpoint is not None)
    for a, b in pairs(names):
        entry = _compare_pair(a, b, outputs, caps[a].bit_exact_with(caps[b]), budgets)
        failed |= not entry["within_budget"]
        result["pairs"][f"{a}-{b}"] = entry
    head = task_output_check(wl, images, task, outputs)
    result["task_output"] = head
    print(
        f"task output ({head['norm']}, {head['head']}) vs torch forward: "
        + ", ".join(f"{n} max_abs={e:.3e}" for n, e in head["max_abs_vs_forward"].items())
    )
    if args.json:
        write_json_atomic(Path(args.json), result)
        print(f"wrote {args.json}")
    if args.plot:
        title = f"{cfg.name} / {profile.name} / task {task}\nweights: {source.describe()}"
        write_plot(Path(args.plot), table, title)
        print(f"wrote {args.plot}")
    return 1 if failed else 0


def _print_layer_table(table: list[dict]) -> None:
    """The per-boundary table, a column per backend pair."""
    cols = [k for k in table[0] if k != "stage"] if table else []
    width = max([18, *(len(c) + 2 for c in cols)])
    print(
        f"{'boundary':<16}"
        + "".join(f"{c:>{width}}" for c in cols)
        + "   (rel_rms; route: agreement)"
    )
    for row in table:
        print(
            f"{row['stage']:<16}" + "".join(f"{row.get(c, float('nan')):>{width}.3e}" for c in cols)
        )


def _compare_pair(
    a: str, b: str, outputs: dict, bit_exact: bool, budgets: dict[str, float]
) -> dict:
    """Backends ``a`` and ``b``'s entry (its line printed): backends of one bit-exact group
    (``bit_exact``) must be identical; any other pair has the profile's budgets."""
    m = compare(outputs[a], outputs[b])
    entry = m.to_dict()
    entry["saturations"] = {
        a: sum(outputs[a].saturations.values()),
        b: sum(outputs[b].saturations.values()),
    }
    if bit_exact:
        entry["bit_exact"] = bool(
            np.array_equal(outputs[a].tokens, outputs[b].tokens)
            and same_logits(outputs[a], outputs[b])
        )
        entry["first_difference"] = first_difference(outputs[a], outputs[b])
        missed = (
            []
            if entry["bit_exact"]
            else [f"not bit-exact (first difference at {entry['first_difference']})"]
        )
    else:
        missed = within_budget(m, budgets)
    entry["within_budget"] = not missed
    verdict = "PASS" if not missed else "FAIL: " + "; ".join(missed)
    same = (
        f" (tokens that route alike: rel_rms={m.rel_rms_same_route:.3e})"
        if m.routing_mismatches
        else ""
    )
    print(
        f"{a} vs {b}: max_abs={m.max_abs:.3e} rel_rms={m.rel_rms:.3e}{same} "
        f"cosine={m.cosine:.7f} "
        f"routing={m.routing_agreement:.4f} ({m.routing_mismatches}/{m.routing_decisions} "
        f"differ) saturations={entry['saturations']}  {verdict}"
    )
    return entry


def verify_images(cfg, args: argparse.Namespace) -> tuple[np.ndarray, str]:
    """The images verify runs: a folder, seeded noise on request, else procedural scenes."""
    if args.images_from is not None:
        return load_image_folder(args.images_from, cfg), f"folder {args.images_from}"
    if args.noise_images:
        return random_images(cfg, args.images, args.seed), "seeded noise"
    return scene_images(cfg, args.images, args.seed), "procedural scenes"


def write_plot(path: Path, table: list[dict], title: str) -> None:
    """The per-layer error plot, written atomically."""
    from edgemoe.host.app.plots import layer_error_plot

    write_file_atomic(Path(path), lambda tmp: layer_error_plot(table, tmp, title))


def add_parser(sub) -> None:
    """The ``verify`` subcommand."""
    v = sub.add_parser(
        "verify",
        help="compare backends on a model and seeded images",
        description="Compare every pair of backends on a model (the shipped trained weights "
        "unless --checkpoint or --random) and seeded images: "
        "the error at every layer boundary and on the final output, against the profile's "
        "budgets (exit 1 when one is missed).",
        formatter_class=HelpFormatter,
    )
    add_options(v, "config", "profile")
    v.add_argument("--task", default=None, help="task name or id (default: the first task)")
    add_options(v, "seed", seed={"help": "seed of the images (and of the --random model)"})
    v.add_argument(
        "--images",
        type=int_range(1, MAX_VERIFY_IMAGES),
        default=1,
        help=f"number of seeded images, 1..{MAX_VERIFY_IMAGES} (every boundary is kept)",
    )
    v.add_argument(
        "--images-from", default=None, help="run every image in this folder instead (resized)"
    )
    v.add_argument(
        "--noise-images",
        action="store_true",
        help="seeded noise images instead of procedural scenes (understates trained error)",
    )
    v.add_argument(
        "--backends",
        default="torch,golden",
        help=f"comma-separated backend names, of: {backends_help()}",
    )
    add_options(
        v,
        "checkpoint",
        checkpoint={
            "help": "M3ViT checkpoint (default: the config's shipped trained checkpoint); a "
            "task head it lacks stays at its initial values, with a notice: verify compares "
            "the datapath, so it needs no --untrained-heads"
        },
    )
    add_options(v, "random")
    v.add_argument(
        "--top-k", type=int, default=None, help="experts per token (default: the config's)"
    )
    v.add_argument("--json", default=None, help="write the metrics as JSON here")
    v.add_argument(
        "--plot", default=None, help="write the per-layer error plot here (PNG, every pair)"
    )
    v.set_defaults(func=cmd_verify)
