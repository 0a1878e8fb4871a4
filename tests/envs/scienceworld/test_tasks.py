"""ScienceWorld parts that need no JVM: task ids, splits, index files, Java checks, observation
comparison, perturbations."""

import json
import random

import pytest

from eef.envs.scienceworld.java import JavaNotFoundError, find_java, java_major
from eef.envs.scienceworld.jvm import JvmPool
from eef.envs.scienceworld.observations import differing_lines, same_state
from eef.envs.scienceworld.tasks import (SPLIT_TABLE, STEP_LIMITS, parse_task_id, read_index_file, split_task_ids,
                                         step_limit, task_name, variations)
from eef.errors import DataError, EefError, UnknownNameError
from eef.experts.scienceworld_gold import PerturbConfig, perturb, thought_for


def test_the_split_table_holds_the_packages_7207_variations():
    assert len(SPLIT_TABLE) == 30 == len(STEP_LIMITS)
    sizes = {split: sum(len(variations(name, split)) for name in SPLIT_TABLE) for split in ("train", "dev", "test")}
    assert sizes == {"train": 3592, "dev": 1796, "test": 1819}


def test_task_names_in_every_form_and_ids():
    assert task_name("task-1-boil") == task_name("1-1") == task_name("boil") == "boil"
    assert task_name("task-5-chemistry-mix-paint-(secondary-color)") == "chemistry-mix-paint-secondary-color"
    assert parse_task_id("task-10-use-thermometer/404") == ("use-thermometer", 404)
    with pytest.raises(UnknownNameError, match="boil/0 .. boil/29"):
        parse_task_id("boil/30")
    with pytest.raises(UnknownNameError, match="ScienceWorld task 'bake'"):
        parse_task_id("bake/1")
    with pytest.raises(UnknownNameError, match="task-name/variation"):
        parse_task_id("boil")


def test_split_ids_interleave_task_types_so_a_prefix_covers_them():
    ids = split_task_ids(["boil", "identify-life-stages-2"], "train")
    assert ids[:4] == ["boil/0", "identify-life-stages-2/0", "boil/1", "identify-life-stages-2/1"]
    assert len(ids) == 14 + 4 and ids[-1] == "boil/13"
    assert split_task_ids(["boil"], "test")[0] == "boil/21"


def test_eto_index_files_are_read_with_eto_task_names(tmp_path):
    path = tmp_path / "test_indices.json"
    path.write_text(json.dumps([["task-1-boil", 21], ["task-10-use-thermometer", 405], ["task-1-boil", 21]]))
    assert read_index_file(path) == ["boil/21", "use-thermometer/405"]
    path.write_text(json.dumps([["task-1-boil", 99]]))
    with pytest.raises(DataError, match=r"\[0\].*boil/29"):
        read_index_file(path)
    path.write_text(json.dumps({"boil": 1}))
    with pytest.raises(DataError, match="JSON list"):
        read_index_file(path)


def test_step_limits_follow_eto_unless_overridden():
    assert step_limit("boil", None, {}) == 100 and step_limit("find-animal", None, {}) == 15
    assert step_limit("boil", 40, {}) == 40
    assert step_limit("boil", 40, {"boil": 7}) == 7


def test_java_versions_are_parsed_old_and_new():
    assert java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert java_major('java version "1.8.0_392"') == 8
    assert java_major('openjdk version "21" 2023-09-19') == 21
    assert java_major("no version here") is None


def test_missing_java_says_how_to_install_it():
    with pytest.raises(JavaNotFoundError, match="apt install openjdk-17-jre-headless"):
        find_java("/nonexistent/bin/java")
    with pytest.raises(JavaNotFoundError, match="not found"):
        JvmPool(java="no-such-java-binary")


def test_too_old_java_is_refused(tmp_path):
    fake = tmp_path / "java"
    fake.write_text('#!/bin/sh\necho \'java version "1.7.0_80"\' >&2\n')
    fake.chmod(0o755)
    with pytest.raises(JavaNotFoundError, match="Java 8 or newer, but .* is Java 7; install Java 17"):
        find_java(str(fake))


def test_a_heap_too_small_for_the_environments_is_refused_before_starting():
    with pytest.raises(EefError, match="heap_mb >= 448"):
        JvmPool(heap_mb=256, envs_per_jvm=32)


def test_observations_match_up_to_line_order_only():
    a = "In it, you see:\n\tthe agent\n\ta cup\n\ta cup\nYou also see:\n\tA door to the kitchen"
    b = "In it, you see:\n\ta cup\n\tthe agent\n\ta cup\nYou also see:\n\tA door to the kitchen"
    assert same_state(a, b)
    assert not same_state(a, b.replace("\ta cup\n", "", 1))  # a line fewer is another state
    assert not same_state("reads 47 degrees", "reads 49 degrees")
    assert differing_lines("x\ny\nz", "z\nw\nx") == (["y"], ["w"])


GOLD = ["a0", "a1", "a2", "a3", "a4", "a5", "a6"]
KEYS = [2, 4, 6]


@pytest.mark.parametrize("seed", range(20))
def test_perturbations_break_the_sequence_after_a_key_action(seed):
    rng = random.Random(seed)
    for kind in ("skip", "swap", "repeat", "stop"):
        actions, at = perturb(GOLD, KEYS, kind, rng)
        assert at > KEYS[0], "the failure keeps the first key action"
        assert actions[:at] == GOLD[:at], "the sequence is unchanged before the perturbation"
        assert actions != GOLD
        if kind == "stop":
            assert actions == GOLD[:at]
        if kind == "skip":
            assert at in KEYS and actions == GOLD[:at] + GOLD[at + 1:]
        if kind == "repeat":
            assert actions[at] == GOLD[at - 1] and len(actions) == len(GOLD) + 1


def test_perturb_config_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="skip, swap, repeat, stop"):
        PerturbConfig(kinds=("shuffle",))


def test_thoughts_are_templated_per_verb():
    assert thought_for("focus on red wire") == "The red wire is what the task is about, so I focus on it."
    assert thought_for("teleport to kitchen") == "What I need next is in the kitchen, so I go there."
    assert thought_for("move dove egg to red box") == "I move the dove egg to the red box."
    assert thought_for("0") == "The simulator asks which one I mean; I choose option 0."
    assert thought_for("wait1") == "I wait for the process to go on."
