"""Trajectories recorded under another price draw (WebShop draws its goals' price limits without a
seed): flagged at the first page by `eef data check` without the recorded limits, replayed faithfully
with the file `eef data import` writes (`-o price_limits=OUT.price_limits.json`)."""

import json

import pytest
from expert_files import eef_expert_record
from webshop_teachers import teacher_episode

from cli_helpers import cli_ok
from eef.data.importers import recorded_price_limits
from eef.data.resolve import price_in
from eef.envs import make
from eef.trajectory import Provenance, Trajectory
from eef.trajectory_files import read_trajectories

TASKS = 6


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, webshop_1k_dir):
    """A GPT-4-like file played under `seed=1` on tasks whose price limit differs from `seed=0`'s
    (and whose target has one price, so the purchase's price check does not hang on the draw)."""
    here, there = (make("webshop", data_dir=str(webshop_1k_dir), seed=s) for s in (0, 1))
    tasks = []
    for task_id in there.task_ids("train"):
        ours, theirs = (e.catalog.goals[e.catalog.goal_index(task_id)] for e in (here, there))
        same_price = here.catalog.by_asin[ours.asin].price == there.catalog.by_asin[ours.asin].price
        if ours.price_upper != theirs.price_upper and same_price:
            tasks.append(task_id)
        if len(tasks) == TASKS:
            break
    runs = [teacher_episode(there, t, "gpt-4-0613", 0.4, seed=3) for t in tasks]
    root = tmp_path_factory.mktemp("price-limits")
    source = root / "webshop_gpt4_0613.json"
    source.write_text(json.dumps([eef_expert_record(r, model="gpt-4-0613") for r in runs]))
    return root, source, runs, there


def test_another_draw_is_flagged_without_the_limits_and_replays_with_them(recorded, webshop_1k_dir):
    root, source, runs, there = recorded
    assert any(r.success for r in runs) and any(not r.success for r in runs)
    out = root / "gpt-4.jsonl"
    option = ["-o", f"data_dir={webshop_1k_dir}"]
    output = cli_ok(
        ["data", "import", str(source), "--format", "eef-expert", "--env", "webshop", "--out", str(out), *option]
    )
    limits = root / "gpt-4.price_limits.json"
    assert f"imported {TASKS} trajectories" in output
    assert f"recorded price limits of {TASKS} tasks -> {limits}; replay with -o price_limits={limits}" in output
    written = json.loads(limits.read_text())
    assert written == {r.task_id: there.catalog.goals[there.catalog.goal_index(r.task_id)].price_upper for r in runs}

    output = cli_ok(["data", "check", str(out), *option, "--out", str(root / "plain.jsonl"), "--json"])
    figures = json.loads(output.strip().splitlines()[-1])
    assert figures["flagged"] == TASKS and figures["divergence_steps"] == {"-1": TASKS}  # the first page differs

    checked = root / "gpt-4.checked.jsonl"
    output = cli_ok(["data", "check", str(out), *option, "-o", f"price_limits={limits}"])
    assert f"checked {TASKS} trajectories: {TASKS} replay faithfully, 0 flagged (none) -> {checked}" in output
    assert [t.reward for t in read_trajectories(checked)] == [r.reward for r in runs]


def test_conflicting_records_keep_the_first_limit_and_are_counted(recorded, webshop_1k_dir, tmp_path):
    _, source, runs, there = recorded
    records = json.loads(source.read_text())
    again = json.loads(json.dumps(records[0]))
    shown = there.catalog.goals[there.catalog.goal_index(runs[0].task_id)].price_upper
    first_page = again["conversations"][0]["content"]
    again["conversations"][0]["content"] = first_page.replace(f"{shown:.2f} dollars", f"{shown + 10:.2f} dollars")
    path = tmp_path / "twice.json"
    path.write_text(json.dumps([*records, again]))
    out = tmp_path / "twice.jsonl"
    args = ["data", "import", str(path), "--format", "eef-expert", "--env", "webshop", "--out", str(out), "--json"]
    output = cli_ok([*args, "-o", f"data_dir={webshop_1k_dir}"])
    assert "1 records show another limit than their task's first (first kept)" in output
    assert json.loads(output.strip().splitlines()[-1])["price_limits"]["conflicts"] == 1
    assert json.loads((tmp_path / "twice.price_limits.json").read_text())[runs[0].task_id] == shown


def test_the_limits_a_first_page_shows():
    assert price_in("i need a red mug, and price lower than 40.00 dollars") == 40.0
    assert price_in("i need a red mug") is None

    def run(task_id, first):
        return Trajectory(task_id, "webshop", task_id, (), first, (), 0.0, False, False, Provenance(source="x"))

    found = recorded_price_limits(
        [
            run("webshop_1", "WebShop [SEP] Instruction: [SEP] a mug, and price lower than 30.00 dollars [SEP] Search"),
            run("webshop_2", "WebShop [SEP] Instruction: [SEP] a lamp [SEP] Search"),  # no clause: no limit
            run("webshop_3", "no instruction on this page"),  # says nothing
            run("webshop_1", "WebShop [SEP] Instruction: [SEP] a mug, and price lower than 50.00 dollars [SEP] Search"),
        ]
    )
    assert found.limits == {"webshop_1": 30.0, "webshop_2": None} and found.conflicts == 1
