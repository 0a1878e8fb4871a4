"""The trajectory viewer's data on a run directory built by hand: lists, EEF's labels, escaping, chunks."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import eef.viewer
from eef.errors import DataError
from eef.methods import PositiveRepository, analyse, eef_solutions, self_solutions
from eef.methods.preference import pair_records
from eef.methods.registry import marked_failure
from eef.solution_files import write_solutions
from eef.trajectory import Provenance, Trajectory, Turn
from eef.trajectory_files import read_trajectories, write_trajectories
from eef.viewer import chunked, write_viewer

SCRIPT = "<script>window.injected = 1</script>"
LABELS = {"sft_pos": "SFT-POS", "rft": "RFT", "nat": "NAT", "eto": "ETO", "eef": "EEF"}
CONFIG = """name: fixture
methods:
  run: [sft_pos, rft, eef]
  iterations: 1
  eef:
    m: 3
"""
EXPERT = "fixture/t1/0"  # a failed expert trajectory of 8 actions: M = 3 simulates s2, s4, s6
# whether the agent succeeded from s0, s2, s4, s6 of EXPERT: A0 beneficial, A1 harmful, A2 beneficial
SUCCEEDED = {0: False, 2: True, 4: False, 6: True}
# test task -> won by (SFT-POS, RFT 1, EEF 1); "a" is won by EEF and lost by RFT only
OUTCOMES = {"a": (False, False, True), "b": (False, True, True), "c": (True, True, False)}


def episode(
    tid: str, task: str, actions: list[str], success: bool, source: str = "self", observation: str = "page"
) -> Trajectory:
    turns = tuple(Turn(f"Thought: go.\nAction: {a}", a, f"{observation} after {a}") for a in actions)
    return Trajectory(
        id=tid,
        env="shop",
        task_id=task,
        prompt=(),
        first_observation=f"Instruction: {task}",
        turns=turns,
        reward=1.0 if success else 0.25,
        success=success,
        terminated=True,
        provenance=Provenance(source=source),
    )


def restored(expert: Trajectory, step: int, success: bool) -> Trajectory:
    """The agent from state ``step`` of ``expert``: the expert's first turns replayed, then its own."""
    own = episode("own", expert.task_id, [f"click[own {step}]", "click[buy now]"], success)
    return replace(
        own,
        id=f"self/it1/{expert.task_id}:{expert.id}@{step}:r0",
        turns=expert.turns[:step] + own.turns,
        provenance=Provenance(source="self", iteration=1, start_step=step, parent_id=EXPERT),
    )


def from_s0(task: str, method_success: bool) -> Trajectory:
    t = episode(f"self/it1/{task}:s0:r0", task, ["search[shirt]", "click[buy now]"], method_success)
    return replace(t, provenance=Provenance(source="self", iteration=1))


def task_outcomes(extra: int = 0) -> dict[str, tuple[bool, bool, bool]]:
    """OUTCOMES and ``extra`` more test tasks won in turn by RFT and by EEF every third."""
    return {**OUTCOMES, **{f"x{i:04d}": (False, i % 2 == 0, i % 3 == 0) for i in range(extra)}}


def write_run(root: Path, extra_test_tasks: int = 0) -> Path:
    """A run of SFT-POS, RFT and EEF (one iteration each) with EEF's labels known in advance."""
    (root / "expert").mkdir(parents=True)
    (root / "config.yaml").write_text(CONFIG)
    actions = [f"click[step {i}]" for i in range(8)]
    failed = replace(
        episode(EXPERT, "t1", actions, False, "gpt-4", observation=SCRIPT), meta={"role": "clone", "teacher": "gpt-4"}
    )
    cloned = replace(episode("fixture/t2/0", "t2", actions[:3], True, "gpt-4"), meta={"role": "clone"})
    write_trajectories(root / "expert/trajectories.jsonl", [failed, cloned])

    eef_rollouts = [from_s0("t1", SUCCEEDED[0]), from_s0("t2", False)]
    eef_rollouts += [restored(failed, step, SUCCEEDED[step]) for step in (2, 4, 6)]
    sims = [eef_rollouts[0], *eef_rollouts[2:]]
    eef_repository = PositiveRepository()
    eef_repository.add(eef_solutions(analyse(failed, sims, 3), sims, 1))
    rft_rollouts = [from_s0("t1", True), from_s0("t2", False)]
    rft_repository = PositiveRepository()
    rft_repository.add(self_solutions(rft_rollouts, 1))
    for method, rollouts, repository in (("eef", eef_rollouts, eef_repository), ("rft", rft_rollouts, rft_repository)):
        write_trajectories(root / method / "iter-1/rollouts.jsonl", rollouts)
        write_solutions(root / method / "iter-1/repository.jsonl", repository.solutions.values())

    for column, stage in enumerate(("sft_pos", "rft/iter-1", "eef/iter-1")):
        evaluated = [
            episode(
                f"self/it0/{task}:s0:r0",
                task,
                ["search[x]"],
                won[column],
                observation=SCRIPT if task == "a" else "page",
            )
            for task, won in task_outcomes(extra_test_tasks).items()
        ]
        write_trajectories(root / stage / "eval/trajectories.jsonl", evaluated)
    return root


def add_eto_and_nat(root: Path) -> None:
    """ETO's and NAT's first iteration beside ``write_run``'s: ETO pairs t2's expert success with
    the agent's failure; NAT trains on that success and on t1's expert failure, marked."""
    experts = {t.task_id: t for t in read_trajectories(root / "expert/trajectories.jsonl")}
    agent = from_s0("t2", False)
    write_trajectories(root / "eto/iter-1/rollouts.jsonl", [agent, from_s0("t1", False)])
    write_trajectories(root / "eto/iter-1/train.jsonl", pair_records([(experts["t2"], agent)]))
    write_trajectories(root / "nat/iter-1/rollouts.jsonl", [from_s0("t1", False), from_s0("t2", False)])
    write_trajectories(root / "nat/iter-1/train.jsonl", [experts["t2"], marked_failure(experts["t1"], "failed")])


def read_data(path: Path) -> tuple[str, Any]:
    """A data file's name and value (the file is ``EEF_VIEWER.chunk(name, value);``)."""
    found = re.fullmatch(r'EEF_VIEWER\.chunk\(("[^"]+"), (.*)\);\n', path.read_text(), re.DOTALL)
    assert found, path
    return json.loads(found[1]), json.loads(found[2])


def viewer_data(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The index, and every chunk's tasks by name."""
    chunks = dict(read_data(p) for p in (out / "data").glob("*.js"))
    return chunks.pop("index"), chunks


def details(out: Path, kind: str, task: str) -> dict[str, Any]:
    index, chunks = viewer_data(out)
    entry = next(t for t in index[kind]["tasks"] if t["id"] == task)
    return chunks[entry["chunk"]][task]


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


def test_the_page_and_its_data_are_written(run_dir: Path, tmp_path: Path) -> None:
    page = write_viewer(run_dir, tmp_path / "viewer", LABELS)
    assert page == tmp_path / "viewer/index.html"
    assert {p.name for p in page.parent.iterdir()} == {"index.html", "viewer.js", "viewer.css", "data"}
    index, chunks = viewer_data(page.parent)
    assert index["title"] == "Trajectories of run fixture"
    assert sorted((name.split("-")[0], len(tasks)) for name, tasks in chunks.items()) == [("test", 3), ("train", 2)]


def test_the_test_list_has_each_evaluations_outcome_per_task(run_dir: Path, tmp_path: Path) -> None:
    out = write_viewer(run_dir, tmp_path / "viewer", LABELS).parent
    test = viewer_data(out)[0]["test"]
    assert test["columns"] == [
        {"label": "SFT-POS", "best": True},
        {"label": "RFT 1", "best": True},
        {"label": "EEF 1", "best": True},
    ]
    assert {t["id"]: [c["won"] for c in t["cells"]] for t in test["tasks"]} == {k: list(v) for k, v in OUTCOMES.items()}
    assert [c["reward"] for c in test["tasks"][0]["cells"]] == [0.25, 0.25, 1.0]
    evals = details(out, "test", "a")["evals"]
    assert [t["won"] for t in evals] == [False, False, True] and evals[2]["turns"][0]["text"].endswith("search[x]")


def test_without_labels_methods_show_their_names_and_the_best_iteration_is_marked(
    run_dir: Path, tmp_path: Path
) -> None:
    (run_dir / "eef/iter-2/eval").mkdir(parents=True)
    # EEF's second iteration wins every task: its best; its first is not
    won_all = [episode(f"e/{task}", task, ["search[x]"], True) for task in OUTCOMES]
    write_trajectories(run_dir / "eef/iter-2/eval/trajectories.jsonl", won_all)
    out = write_viewer(run_dir, tmp_path / "viewer").parent
    columns = viewer_data(out)[0]["test"]["columns"]
    assert [(c["label"], c["best"]) for c in columns] == [
        ("sft_pos", True),
        ("rft 1", True),
        ("eef 1", False),
        ("eef 2", True),
    ]


def test_eef_labels_recovery_states_and_restored_starts_are_drawn_from_the_rollouts(
    run_dir: Path, tmp_path: Path
) -> None:
    out = write_viewer(run_dir, tmp_path / "viewer", LABELS).parent
    train = viewer_data(out)[0]["train"]
    assert [c["label"] for c in train["columns"]] == ["RFT 1", "EEF 1"]
    t1 = next(t for t in train["tasks"] if t["id"] == "t1")
    assert t1["experts"] == [False]
    assert t1["cells"] == [
        {"solved": True, "beneficial": 0, "harmful": 0, "recovery": 0},
        {"solved": True, "beneficial": 2, "harmful": 1, "recovery": 1},
    ]
    task = details(out, "train", "t1")
    expert = task["experts"][0]
    assert (expert["id"], expert["teacher"], expert["role"], expert["cloned"]) == (EXPERT, "gpt-4", "clone", False)
    eef = task["stages"][1]
    assert eef["analyses"][EXPERT] == {
        "states": [
            {"step": 0, "won": False},
            {"step": 2, "won": True},
            {"step": 4, "won": False},
            {"step": 6, "won": True},
        ],
        "labels": ["beneficial", "harmful", "beneficial"],
        "segments": ["beneficial"] * 2 + ["harmful"] * 2 + ["beneficial"] * 2 + [None] * 2,
        "recovery": [4],
    }
    assert [(r["start"], r["parent"], r["won"]) for r in eef["rollouts"]] == [
        (0, None, False),
        (2, EXPERT, True),
        (4, EXPERT, False),
        (6, EXPERT, True),
    ]
    # the solution from the recovery state s4: harmful A1 and the expert before s4 context only, A2 and the agent trained
    solution = next(s for s in eef["solutions"] if s["state"] == f"{EXPERT}@4")
    assert solution["kind"] == "expert+self" and solution["trajectory"]["start"] == 6
    assert [turn["trainable"] for turn in solution["trajectory"]["turns"]] == [False] * 4 + [True] * 4
    rft = task["stages"][0]
    assert rft["analyses"] == {} and [s["state"] for s in rft["solutions"]] == ["t1@s0"]
    t2 = details(out, "train", "t2")
    assert t2["experts"][0]["cloned"] is True and t2["stages"][0]["solved"] is False


def test_etos_pairs_and_nats_trained_failures_are_shown_with_their_task(run_dir: Path, tmp_path: Path) -> None:
    add_eto_and_nat(run_dir)
    out = write_viewer(run_dir, tmp_path / "viewer", LABELS).parent
    columns = [c["label"] for c in viewer_data(out)[0]["train"]["columns"]]
    assert columns == ["RFT 1", "NAT 1", "ETO 1", "EEF 1"]
    t1, t2 = (details(out, "train", task)["stages"] for task in ("t1", "t2"))
    nat, eto = 1, 2
    (pair,) = t2[eto]["pairs"]
    assert (pair["chosen"]["id"], pair["chosen"]["won"]) == ("fixture/t2/0", True)
    assert (pair["rejected"]["id"], pair["rejected"]["won"]) == ("self/it1/t2:s0:r0", False)
    assert t1[eto]["pairs"] == [] and t2[eto]["solved"] is None and t2[eto]["failures"] == []
    (failure,) = t1[nat]["failures"]
    assert failure["id"] == f"{EXPERT}#negative" and all(turn["trainable"] for turn in failure["turns"])
    assert t2[nat]["failures"] == [] and t2[nat]["pairs"] == []  # its expert success is no failure


def test_an_expert_whose_state_was_not_simulated_is_shown_as_skipped(run_dir: Path, tmp_path: Path) -> None:
    from eef.trajectory_files import read_trajectories

    path = run_dir / "eef/iter-1/rollouts.jsonl"
    write_trajectories(path, [t for t in read_trajectories(path) if t.provenance.start_step != 4])  # s4 diverged
    out = write_viewer(run_dir, tmp_path / "viewer", LABELS).parent
    assert details(out, "train", "t1")["stages"][1]["analyses"] == {EXPERT: {"skipped": True}}


def test_trajectory_text_stays_data(run_dir: Path, tmp_path: Path) -> None:
    out = write_viewer(run_dir, tmp_path / "viewer", LABELS).parent
    assert details(out, "test", "a")["evals"][0]["turns"][0]["obs"] == f"{SCRIPT} after search[x]"
    assert details(out, "train", "t1")["experts"][0]["turns"][0]["obs"] == f"{SCRIPT} after click[step 0]"
    for path in (out / "data").glob("*.js"):  # every "<" escaped: no text can close a script or open a tag
        assert "<" not in path.read_text()
    script = (out / "viewer.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in script, sink
    assert '<script src="viewer.js"></script>' in (out / "index.html").read_text()


def test_chunks_stay_within_their_size_and_hold_every_task_once() -> None:
    sizes = {f"t{i}": "x" * (10 * i) for i in range(1, 40)}
    groups = chunked(sizes, 200)
    assert [task for group in groups for task, _ in group] == list(sizes)
    for group in groups:
        assert len(group) == 1 or sum(len(text) for _, text in group) <= 200
    assert [len(g) for g in chunked({"big": "x" * 500, "small": "x"}, 200)] == [1, 1]
    assert chunked({}, 200) == []


def test_many_tasks_are_split_into_chunks_loaded_per_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = write_run(tmp_path / "run", extra_test_tasks=400)
    monkeypatch.setattr(eef.viewer, "CHUNK_BYTES", 20_000)
    out = write_viewer(run_dir, tmp_path / "viewer", LABELS).parent
    index, chunks = viewer_data(out)
    tests = [name for name in chunks if name.startswith("test-")]
    assert len(tests) > 10
    for task in index["test"]["tasks"]:
        assert task["id"] in chunks[task["chunk"]]
        assert sum(task["id"] in chunks[name] for name in tests) == 1
    assert len(index["test"]["tasks"]) == 403
    # rewritten with bigger chunks: the old files go, the index names only files that exist
    monkeypatch.setattr(eef.viewer, "CHUNK_BYTES", 1 << 20)
    write_viewer(run_dir, out, LABELS)
    index, chunks = viewer_data(out)
    assert sorted(chunks) == sorted({t["chunk"] for kind in ("test", "train") for t in index[kind]["tasks"]})
    assert len([name for name in chunks if name.startswith("test-")]) == 1


def test_a_run_without_artifacts_gives_empty_lists(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    out = write_viewer(tmp_path / "run", tmp_path / "viewer").parent
    index, chunks = viewer_data(out)
    assert index == {
        "title": "Trajectories of run run",
        "test": {"columns": [], "tasks": []},
        "train": {"columns": [], "tasks": []},
    }
    assert chunks == {}
    with pytest.raises(DataError, match="no such run directory"):
        write_viewer(tmp_path / "missing", tmp_path / "viewer")
