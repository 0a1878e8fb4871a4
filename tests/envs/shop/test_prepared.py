import json
import os
from pathlib import Path

import pytest

from eef.envs import make
from eef.envs.shop.generated import naive_query
from eef.envs.shop.prepared import open_prepared, prepare_webshop
from eef.envs.shop.synthetic_release import ReleaseShape, write_synthetic_release
from eef.envs.shop.webshop_data import load_webshop
from eef.errors import DataError, EefError


def _same(prepared, memory) -> None:
    assert prepared.goals == memory.goals
    assert prepared.splits == memory.splits
    assert list(prepared.products) == list(memory.products)
    skipped = {k: v for k, v in memory.info.items() if k.startswith("skipped_")}
    assert skipped and {k: prepared.info.get(k) for k in skipped} == skipped
    assert all(prepared.by_asin[p.asin] == p for p in memory.products)
    for goal in memory.goals[::7]:
        query = naive_query(goal.instruction)
        assert prepared.index.search(query) == memory.index.search(query), query


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """A small synthetic release in the original files' format (items_shuffle.json, ...)."""
    out = tmp_path_factory.mktemp("release")
    write_synthetic_release(out, ReleaseShape(products=400, vocabulary=3000, instructed_share=0.2, human_products=60))
    return out


@pytest.mark.parametrize("goals", ["synthetic", "human"])
def test_prepared_1k_equals_the_in_memory_path(webshop_1k_dir, tmp_path, goals):
    prepared = prepare_webshop(webshop_1k_dir, tmp_path / "prepared", progress=False)
    for seed in (0, 5):
        _same(
            open_prepared(prepared, webshop_1k_dir, goals=goals, seed=seed),
            load_webshop(webshop_1k_dir, goals=goals, seed=seed),
        )


@pytest.mark.parametrize("goals", ["synthetic", "human"])
def test_prepared_original_files_equal_the_in_memory_path(release, tmp_path, goals):
    prepared = prepare_webshop(release, tmp_path / "prepared", progress=False)
    fast, memory = open_prepared(prepared, release, goals=goals, seed=3), load_webshop(release, goals=goals, seed=3)
    assert len(memory.goals) > 50
    _same(fast, memory)
    episode = make("webshop", data_dir=str(release), goals=goals, prepared=True, prepared_dir=str(prepared))
    twin = make("webshop", data_dir=str(release), goals=goals, prepared=False)
    for task_id in episode.task_ids("test")[:20]:  # the oracle's whole episode: pages and reward alike
        pages = [env.reset(task_id) for env in (episode, twin)]
        while True:
            action = twin.oracle_action()
            results = [env.step(action) for env in (episode, twin)]
            assert results[0] == results[1] and pages[0] == pages[1]
            if results[1].done:
                break


def test_a_second_prepare_keeps_the_first_and_force_redoes_it(release, tmp_path):
    prepared = prepare_webshop(release, tmp_path / "p", progress=False)
    first = (prepared / "manifest.json").stat().st_mtime_ns
    assert prepare_webshop(release, tmp_path / "p", progress=False) == prepared
    assert (prepared / "manifest.json").stat().st_mtime_ns == first
    prepare_webshop(release, tmp_path / "p", force=True, progress=False)
    assert (prepared / "manifest.json").stat().st_mtime_ns != first
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_a_changed_source_makes_the_preparation_stale(webshop_1k_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in webshop_1k_dir.iterdir():
        if f.is_file():
            (data / f.name).write_bytes(f.read_bytes())
    prepared = prepare_webshop(data, progress=False)
    os.utime(data / "items_ins_v2_1000.json", ns=(1, 1))
    with pytest.raises(DataError, match=r"items_ins_v2_1000.json changed since it was prepared.*--force"):
        open_prepared(prepared, data)
    with pytest.raises(DataError, match="changed since"):  # the env refuses it too, never redoes it silently
        make("webshop", data_dir=str(data), prepared=True)
    (data / "items_human_ins.json").write_text("{}")
    prepare_webshop(data, progress=False)  # a stale preparation is replaced
    assert open_prepared(prepared, data).goals == load_webshop(data).goals


def _copy_release(release: Path, to: Path) -> Path:
    to.mkdir()
    for name in ("items_shuffle.json", "items_ins_v2.json", "items_human_ins.json"):
        (to / name).write_bytes((release / name).read_bytes())
    return to


def test_a_cut_product_file_is_named_and_the_old_preparation_survives(release, tmp_path):
    data = _copy_release(release, tmp_path / "data")
    prepared = prepare_webshop(data, progress=False)
    manifest = (prepared / "manifest.json").read_text()
    text = (data / "items_shuffle.json").read_text()
    (data / "items_shuffle.json").write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match=r"items_shuffle.json:1: element \[\d+\].*cut short"):
        prepare_webshop(data, force=True, progress=False)
    assert (prepared / "manifest.json").read_text() == manifest
    assert sorted(p.name for p in data.iterdir() if p.name.startswith(".eef-prepared.")) == [".eef-prepared.lock"]


def test_a_product_without_a_field_the_reward_reads_is_named(release, tmp_path):
    data = _copy_release(release, tmp_path / "data")
    products = json.loads((data / "items_shuffle.json").read_text())
    del products[7]["name"]
    (data / "items_shuffle.json").write_text(json.dumps(products))
    with pytest.raises(DataError, match=r"items_shuffle.json: field '\[7\].name': missing"):
        prepare_webshop(data, progress=False)
    assert not (data / "eef-prepared").exists()


def test_goals_for_products_not_in_the_catalog_are_counted(release, tmp_path):
    data = _copy_release(release, tmp_path / "data")
    human = json.loads((data / "items_human_ins.json").read_text())
    human["B0NOTTHERE"] = [{"instruction": "x", "instruction_attributes": ["y"]}] * 2
    (data / "items_human_ins.json").write_text(json.dumps(human))
    synthetic = json.loads((data / "items_ins_v2.json").read_text())
    synthetic["B0NOTTHERE"] = {"instruction": "x", "instruction_attributes": ["y"], "instruction_options": []}
    (data / "items_ins_v2.json").write_text(json.dumps(synthetic))
    prepared = prepare_webshop(data, progress=False)
    for goals, count in (("human", 2), ("synthetic", 1)):
        env = make("webshop", data_dir=str(data), goals=goals, prepared=True, prepared_dir=str(prepared))
        assert env.info[f"skipped_{goals}_instructions"] == {"names a product not in the catalog": count}


def test_env_options_of_the_prepared_path(release):
    with pytest.raises(EefError, match="expected auto, true or false"):
        make("webshop", data_dir=str(release), prepared="sometimes")
    with pytest.raises(EefError, match="needs prepared=false"):
        make("webshop", data_dir=str(release), prepared=True, num_products=10)
    small = make("webshop", data_dir=str(release))  # auto: a small product file is read in memory
    assert "prepared" not in small.info
