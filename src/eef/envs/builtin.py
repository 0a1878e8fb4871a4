"""Factories of the environments that ship with eef (registered in :mod:`eef.envs`)."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eef.checks import FieldErrors
from eef.envs.shop.engine import ShopEnv, check_episode_settings
from eef.errors import EefError

if TYPE_CHECKING:
    from eef.envs.scienceworld import ScienceWorldEnv

WEBSHOP_DATA_ENV = "EEF_WEBSHOP_DATA"
PREPARE_ABOVE_BYTES = 64 << 20


def make_shop(
    seed: int = 0,
    goals: int = 1000,
    groups: int = 24,
    goals_per_target: int = 1,
    test: int = 100,
    dev: int = 100,
    max_steps: int = 10,
    reward_mode: str = "faithful",
    view: str = "webshop",
) -> ShopEnv:
    """Built-in generated shop with WebShop semantics (the default; no download)."""
    from eef.envs.shop.generated import GeneratorConfig, generate_catalog

    catalog = generate_catalog(
        GeneratorConfig(seed=seed, goals=goals, groups=groups, goals_per_target=goals_per_target, test=test, dev=dev)
    )
    return ShopEnv(catalog, name="shop", max_steps=max_steps, reward_mode=reward_mode, view=view)


def check_shop_options(options: Mapping[str, Any]) -> None:
    """The built-in shop's option values in range, checked without making its catalog.

    Raises:
        FieldErrors: each option out of range.
    """
    from eef.envs.shop.generated import GeneratorConfig

    catalog_keys = {f.name for f in dataclasses.fields(GeneratorConfig)}
    _check_each(
        options, [(GeneratorConfig, catalog_keys), (check_episode_settings, {"max_steps", "reward_mode", "view"})]
    )


def check_webshop_options(options: Mapping[str, Any]) -> None:
    """WebShop's episode settings in range, checked before its product data are read (minutes for
    the full set).

    Raises:
        FieldErrors: each option out of range.
    """
    _check_each(options, [(check_episode_settings, {"max_steps", "reward_mode"})])


def _check_each(options: Mapping[str, Any], checks: list[tuple[Callable[..., Any], set[str]]]) -> None:
    """Call each check with the options it takes; every problem found, at once."""
    problems = []
    for check, keys in checks:
        try:
            check(**{key: value for key, value in options.items() if key in keys})
        except FieldErrors as e:
            problems += e.problems
    if problems:
        raise FieldErrors(problems)


def make_webshop(
    data_dir: str | None = None,
    goals: str = "synthetic",
    seed: int = 0,
    num_products: int | None = None,
    split_files: dict[str, str] | None = None,
    nouns: str = "auto",
    prepared: bool | str = "auto",
    prepared_dir: str | None = None,
    max_steps: int = 10,
    reward_mode: str = "faithful",
    price_limits: str | list[str] | None = None,
) -> ShopEnv:
    """WebShop on its real product data (a directory you name, or $EEF_WEBSHOP_DATA).

    ``prepared``: ``auto`` reads a product file of over 64 MB (the full release) through a
    one-time preparation saved in ``prepared_dir`` (default ``<data_dir>/eef-prepared``) and
    reads smaller ones in memory; ``true`` and ``false`` force either way.
    ``price_limits``: a file (or list of files) of recorded goal price limits, task id -> limit,
    as ``eef data import`` writes them; the listed goals take them instead of the seeded draw
    (:mod:`eef.envs.shop.price_limits`).
    """
    from eef.envs.shop.prepared import default_prepared_dir, open_prepared, prepare_webshop
    from eef.envs.shop.webshop_data import load_webshop, source_files

    data_dir = webshop_data_dir(data_dir)
    if prepared == "auto":
        prepared = source_files(Path(data_dir))["products"].stat().st_size > PREPARE_ABOVE_BYTES
        prepared = prepared and num_products is None
    elif not isinstance(prepared, bool):
        raise EefError(f"option prepared={prepared!r}: expected auto, true or false")
    if not prepared:
        catalog = load_webshop(
            data_dir, goals=goals, seed=seed, num_products=num_products, split_files=split_files, nouns=nouns
        )
    else:
        if num_products is not None:
            raise EefError("option num_products reads the first N products in memory: it needs prepared=false")
        out = Path(prepared_dir) if prepared_dir else default_prepared_dir(data_dir)
        if not (out / "manifest.json").is_file():  # one already there is used, or refused if stale, never redone
            print(f"preparing {data_dir} once into {out}; later runs reuse it", file=sys.stderr)
            prepare_webshop(data_dir, out)
        catalog = open_prepared(out, data_dir, goals=goals, seed=seed, split_files=split_files, nouns=nouns)
    if price_limits is not None:
        from eef.envs.shop.price_limits import apply_price_limits

        catalog = apply_price_limits(catalog, price_limits)
    return ShopEnv(catalog, name="webshop", max_steps=max_steps, reward_mode=reward_mode)


def webshop_data_dir(data_dir: str | None) -> str:
    """The WebShop data directory: the option's, else ``$EEF_WEBSHOP_DATA``."""
    data_dir = data_dir or os.environ.get(WEBSHOP_DATA_ENV)
    if not data_dir:
        raise EefError(
            f"webshop needs its data directory: option data_dir=PATH or the {WEBSHOP_DATA_ENV} environment variable"
        )
    return data_dir


def make_scienceworld(
    tasks: list[str] | str | None = None,
    simplifications: str = "easy",
    max_steps: int | None = None,
    step_limits: dict[str, int] | None = None,
    split_files: dict[str, str] | None = None,
    envs_per_jvm: int = 16,
    heap_mb: int = 256,
    java: str = "java",
    call_timeout_s: float = 120.0,
) -> ScienceWorldEnv:
    """ScienceWorld's 30 task types through its simulator (needs Java; see docs/scienceworld.md)."""
    from eef.envs.scienceworld import JvmPool, ScienceWorldEnv

    pool = JvmPool(java=java, heap_mb=heap_mb, envs_per_jvm=envs_per_jvm, call_timeout_s=call_timeout_s)
    return ScienceWorldEnv(
        pool,
        tasks=tasks,
        simplifications=simplifications,
        max_steps=max_steps,
        step_limits=step_limits,
        split_files=split_files,
    )
