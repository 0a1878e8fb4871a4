"""ScienceWorld parts that need no JVM: task ids, splits, index files, Java checks, observation
comparison, perturbations."""

import json
import random

import pytest

from eef.envs.scienceworld.java import JavaNotFoundError, find_java, java_major
from eef.envs.scienceworld.jvm import JvmPool
from eef.envs.scienceworld.observations import canonical_line, differing_lines, same_state
from eef.envs.scienceworld.tasks import (
    SPLIT_TABLE,
    STEP_LIMITS,
    parse_task_id,
    read_index_file,
    split_task_ids,
    step_limit,
    task_name,
    variations,
)
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
    fake.write_text("#!/bin/sh\necho 'java version \"1.7.0_80\"' >&2\n")
    fake.chmod(0o755)
    with pytest.raises(JavaNotFoundError, match="Java 8 or newer, but .* is Java 7; install Java 17"):
        find_java(str(fake))


def test_a_heap_too_small_for_the_environments_is_refused_before_starting():
    with pytest.raises(EefError, match="heap_mb >= 448"):
        JvmPool(heap_mb=256, envs_per_jvm=32)
    with pytest.raises(EefError, match="call_timeout_s must be positive"):
        JvmPool(call_timeout_s=0)


def test_observations_match_up_to_line_order_only():
    a = "In it, you see:\n\tthe agent\n\ta cup\n\ta cup\nYou also see:\n\tA door to the kitchen"
    b = "In it, you see:\n\ta cup\n\tthe agent\n\ta cup\nYou also see:\n\tA door to the kitchen"
    assert same_state(a, b)
    assert not same_state(a, b.replace("\ta cup\n", "", 1))  # a line fewer is another state
    assert not same_state("reads 47 degrees", "reads 49 degrees")
    assert differing_lines("x\ny\nz", "z\nw\nx") == (["y"], ["w"])


# Lines as the simulator printed them, in two orders that the same state produced on two runs.
CUPBOARD = (
    "\ta large cupboard. The large cupboard door is open. In the large cupboard is: a drawer, a wood cup "
    "(containing yellow paint), a wood cup (containing blue paint), a wood cup (containing nothing)."
)
CUPBOARD_AGAIN = (
    "\ta large cupboard. The large cupboard door is open. In the large cupboard is: a wood cup "
    "(containing blue paint), a drawer, a wood cup (containing nothing), a wood cup (containing yellow "
    "paint)."
)
SEED_JAR = "\ta seed jar (containing a round green pea seed, a wrinkly orange pea seed)"
SEED_JAR_AGAIN = "\ta seed jar (containing a wrinkly orange pea seed, a round green pea seed)"
POT = (
    "\ta flower pot 4 (containing a pea plant in the reproducing stage with a tall height. On the pea plant you "
    "see: a adult bee, a round green pea seed, a wilting purple flower. , soil)"
)
POT_AGAIN = (
    "\ta flower pot 4 (containing soil, a pea plant in the reproducing stage with a tall height. On the pea "
    "plant you see: a wilting purple flower, a adult bee, a round green pea seed. )"
)


@pytest.mark.parametrize("first, second", [(CUPBOARD, CUPBOARD_AGAIN), (SEED_JAR, SEED_JAR_AGAIN), (POT, POT_AGAIN)])
def test_lists_inside_a_line_match_in_any_order(first, second):
    room = "This room is called the greenhouse. In it, you see: \n\tthe agent\n"
    assert same_state(room + first, room + second)
    assert canonical_line(first) == canonical_line(second)


def test_lists_inside_a_line_still_tell_other_states_apart():
    # paint in another cup, a seed fewer, a seed moved out of the jar, an item moved between nested lists
    assert not same_state(CUPBOARD, CUPBOARD.replace("(containing nothing)", "(containing red paint)"))
    assert not same_state(SEED_JAR, "\ta seed jar (containing a round green pea seed)")
    assert not same_state(
        SEED_JAR + "\n\ta bee", "\ta seed jar (containing a round green pea seed)\n\ta bee, a wrinkly orange pea seed"
    )
    assert not same_state(POT, POT.replace("a adult bee, ", "").replace(", soil)", ", a adult bee, soil)"))
    assert not same_state(
        "a box (containing a cup (containing water), a pen)", "a box (containing a cup, a pen (containing water))"
    )


def test_canonical_lines_sort_every_depth_and_survive_unbalanced_parentheses():
    assert canonical_line("In the cupboard is: a drawer, a cup (containing water, soil).") == (
        "In the cupboard is: a cup (containing soil, water), a drawer."
    )
    assert canonical_line("reads 3.5 degrees") == "reads 3.5 degrees"  # a decimal point ends no list
    assert canonical_line("a jar (containing b, a") == "a jar (containing a, b"
    assert canonical_line("a) b, c") == "a) b, c"


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
            assert at in KEYS and actions == GOLD[:at] + GOLD[at + 1 :]
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
