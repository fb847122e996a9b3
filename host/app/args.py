"""What every command shares: argument types, the usage-error parser, the float model.

Each command lives in its own module (:mod:`~edgemoe.host.app.run`,
:mod:`~edgemoe.host.app.verify`, ...) with an ``add_parser(sub)``;
:mod:`~edgemoe.host.app.cli` only assembles them.
"""

from __future__ import annotations

import argparse
import re

from edgemoe.errors import EdgeMoeError
from edgemoe.host.contracts.profile import DEFAULT_PROFILE
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.models.config import DEFAULT_CONFIG

#: Seeds numpy and torch both take.
MAX_SEED = 2**32 - 1
#: Seeded images ``verify`` records every layer boundary of (each backend keeps them all).
MAX_VERIFY_IMAGES = 16
#: Longest ``--timeout`` (a day).
MAX_TIMEOUT_S = 86400.0


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, unless it has none or its help names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit code 2, like every other bad input."""

    def error(self, message: str):  # noqa: D401 - argparse's API
        # "argument --batch: must be in 1..1024" reads as "--batch must be in 1..1024"
        message = re.sub(r"^argument (\S+): must be ", r"\1 must be ", message)
        self.exit(2, f"edgemoe: error: {message} (see {self.prog} --help)\n")


def int_range(lo: int, hi: int):
    """An argparse type: an integer in ``lo..hi``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}, got {v}")
        return v

    parse.__name__ = f"integer {lo}..{hi}"
    return parse


def seed_arg(text: str) -> int:
    """An argparse type: a seed, an integer in 0..2**32 - 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a seed (an integer in 0..{MAX_SEED})"
        ) from None
    if not 0 <= v <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"seed {v} outside 0..{MAX_SEED}")
    return v


def _float_in(text: str, what: str, lo: float, hi: float, lo_open: bool, unit: str) -> float:
    """``text`` as a float in ``lo..hi`` (``(lo, hi]`` when ``lo_open``; NaN never)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not ((lo < v) if lo_open else (lo <= v)) or not v <= hi:  # NaN fails both
        span = f"({lo:g}, {hi:g}]" if lo_open else f"{lo:g}..{hi:g}"
        raise argparse.ArgumentTypeError(f"must be in {span} {unit}, got {text}")
    return v


def timeout_arg(text: str) -> float:
    """An argparse type: seconds, positive and finite, at most a day."""
    return _float_in(text, "a number of seconds", 0, MAX_TIMEOUT_S, True, "seconds")


def clock_arg(text: str) -> float:
    """An argparse type: a PL clock in MHz, 50..600."""
    return _float_in(text, "a frequency in MHz", 50, 600, False, "MHz")


#: The options the commands share, by name: their argparse keywords as most commands take
#: them (:func:`add_options` adds a set of them, a command's changes applied).
SHARED_OPTIONS: dict[str, dict] = {
    "config": {"default": DEFAULT_CONFIG, "help": "config name or YAML path"},
    "profile": {"default": DEFAULT_PROFILE, "help": "precision profile name or path"},
    "checkpoint": {"default": None, "help": "M3ViT checkpoint instead of random init"},
    "seed": {"type": seed_arg, "default": 0, "help": "seed of the random init"},
    "random": {
        "action": "store_true",
        "help": "the seeded random model instead of the shipped trained weights",
    },
    "untrained_heads": {
        "action": "store_true",
        "help": "run tasks whose head the checkpoint lacks (left at their initial values; "
        "refused without this flag); their outputs say 'untrained head'",
    },
    "tiling": {
        "default": f"{DEFAULT_TILING.lin_in}x{DEFAULT_TILING.lin_out}",
        "help": "linear-unit tile LIN_INxLIN_OUT (the default is the committed kernel build)",
    },
    "p": {
        "type": int_range(1, 255),
        "default": DEFAULT_TILING.p,
        "help": "attention query rows per key sweep",
    },
}


def add_options(parser: argparse.ArgumentParser, *names: str, **changes: dict) -> None:
    """Add the shared options ``names`` (keys of :data:`SHARED_OPTIONS`) to ``parser``, in
    that order; ``changes[name]`` replaces some of one option's keywords (its default or
    help, where a command reads it otherwise)."""
    unknown = set(changes) - set(names)
    if unknown:
        raise ValueError(f"changes to options not added: {sorted(unknown)}")
    for name in names:
        option = "--" + name.replace("_", "-")
        parser.add_argument(option, **{**SHARED_OPTIONS[name], **changes.get(name, {})})


def need_torch() -> None:
    """A one-line error where the float model is needed and PyTorch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise EdgeMoeError(
            "this needs the float model and PyTorch is not installed: pip install "
            "'edgemoe[full]' (on a board, run a bundle: edgemoe run --bundle FILE)"
        ) from None


def build_model(cfg, seed: int, checkpoint: str | None):
    """The float model: a checkpoint loaded into it, else a seeded random init.

    Returns
    -------
    tuple[M3ViT, LoadResult]
        The model in eval mode and what loading did: the checkpoint loader's one-line
        notices and the tasks whose head the checkpoint lacks (none for the random
        init, an explicit request).
    """
    need_torch()
    from edgemoe.models.checkpoint import LoadResult, load_checkpoint_result
    from edgemoe.models.m3vit import M3ViT, random_model

    if checkpoint is None:
        return random_model(cfg, seed), LoadResult([])
    model = M3ViT(cfg, seed=seed)
    # the project's own weight files (edgemoe train) carry the light heads: require them
    own = str(checkpoint).endswith(".safetensors")
    loaded = load_checkpoint_result(model, checkpoint, strict_heads=own)
    return model.eval(), loaded


def parse_tiling(text: str, p: int) -> Tiling:
    """``--tiling LIN_INxLIN_OUT`` with ``--p`` (:meth:`Tiling.parse`)."""
    return Tiling.parse(text, p)


def parse_task(task: str | int | None, cfg) -> str:
    """One task by name or id (``"1"`` is id 1); None: the config's first task.

    The one task parser, with :func:`parse_tasks` (``run``, ``verify``, ``bench``,
    ``eval`` and the Python API).
    """
    if task is None:
        task = 0
    if isinstance(task, str) and task.strip().isdigit():
        task = int(task)
    return cfg.task_names[cfg.task_id(task.strip() if isinstance(task, str) else task)]


def parse_tasks(tasks, cfg, what: str = "--task") -> list[str]:
    """Task names from a flag or an argument, each named once, in the order given.

    Parameters
    ----------
    tasks : None, str, int or sequence of str/int
        None: every task of the config. A string may list several, comma-separated
        (``"semseg,1"``); names and ids mix.
    cfg : ModelConfig
    what : str
        How the caller names the argument, for the errors.
    """
    if tasks is None:
        return list(cfg.task_names)
    if isinstance(tasks, str):
        items: list = [t for t in tasks.split(",") if t.strip()]
        shown = tasks
    else:
        items = [tasks] if isinstance(tasks, int) else list(tasks)
        shown = str(tasks)
    names: list[str] = []
    for t in items:
        name = parse_task(t, cfg)
        if name in names:
            raise EdgeMoeError(f"{what} {shown}: names task {name!r} twice")
        names.append(name)
    if not names:
        raise EdgeMoeError(f"{what} names no task")
    return names
