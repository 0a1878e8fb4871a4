"""The positive repository on disk: typed records, and older runs' files still read."""

import json
from dataclasses import replace

import pytest

from eef.agent.prompt import build_prompt
from eef.errors import DataError
from eef.experts.oracle import oracle_trajectories
from eef.methods import Solution
from eef.solution_files import read_solutions, write_solutions


@pytest.fixture(scope="module")
def solutions(shop_env):
    trajectories = oracle_trajectories(shop_env, shop_env.task_ids("train")[:2], build_prompt("shop"))
    return [
        Solution(f"{t.task_id}@s0", replace(t, meta={"note": i}), len(t.turns), 1 + i, "self")
        for i, t in enumerate(trajectories)
    ]


def test_solutions_read_back_as_written(solutions, tmp_path):
    assert write_solutions(tmp_path / "repository.jsonl", solutions) == 2
    assert read_solutions(tmp_path / "repository.jsonl") == solutions


def test_an_older_runs_repository_still_reads(solutions, tmp_path):
    # runs before the typed records kept the fields in each trajectory's meta
    lines = [
        {
            **s.trajectory.to_dict(),
            "meta": {
                **s.trajectory.meta,
                "state": s.state_key,
                "actions": s.actions,
                "iteration": s.iteration,
                "kind": s.kind,
            },
        }
        for s in solutions
    ]
    (tmp_path / "old.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert read_solutions(tmp_path / "old.jsonl") == solutions


def test_a_record_without_a_field_names_its_line_and_field(solutions, tmp_path):
    write_solutions(tmp_path / "repository.jsonl", solutions)
    records = [json.loads(line) for line in (tmp_path / "repository.jsonl").read_text().splitlines()]
    del records[1]["kind"]
    (tmp_path / "repository.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DataError, match=r"repository.jsonl:2: field 'kind': missing"):
        read_solutions(tmp_path / "repository.jsonl")
