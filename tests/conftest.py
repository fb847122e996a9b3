"""Shared fixtures: configs, profiles and seeded models, built once per session."""

from __future__ import annotations

import functools

import pytest

from edgemoe.host.profile import load_profile
from edgemoe.models import load_config

SHARED = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared"


@functools.cache
def cfg(name: str):
    return load_config(name)


@functools.cache
def profile(name: str):
    return load_profile(name)


@functools.cache
def model(cfg_name: str, seed: int, style: str = "m3vit"):
    from edgemoe.models.m3vit import random_model

    return random_model(cfg(cfg_name), seed, style)


@pytest.fixture
def mini():
    return cfg("m3vit-mini")
