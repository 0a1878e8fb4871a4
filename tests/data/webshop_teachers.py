"""Offline stand-ins for the EEF authors' WebShop dumps: two teachers' files in the set's format.

The authors' ``webshop_gpt*`` files (GPT-4 and GPT-3.5-turbo runs, successes and failures) cannot
be downloaded here. This writes files of the same shape (docs/data.md: a JSON array of
``{id, conversations: [{role, content}], info: {reward, llm_name, agent_arch}}``, ``id`` the
WebShop session) from real episodes of a ``webshop`` environment: a shopper that searches the
instruction's words, opens the target when it is listed and sets its options, and that, by a
seeded draw per task, opens another listed product or buys before setting the options. The
``gpt-4`` stand-in errs on fewer tasks than the ``gpt-3.5`` one.

Run as a script to write both files of the first tasks of the 1k data's training split::

    python tests/data/webshop_teachers.py OUT_DIR -o data_dir=/work/shared/data/webshop-1k --tasks 12
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import yaml
from expert_files import eef_expert_record

from eef.envs.protocol import TextEnv
from eef.experts.episode import play_episode
from eef.experts.oracle import displayed, thought_for
from eef.trajectory import Provenance, Trajectory

# (file name, the model's name in info.llm_name, share of tasks on which the teacher errs)
TEACHERS = (
    ("webshop_gpt4_0613.json", "gpt-4-0613", 0.4),
    ("webshop_gpt35_turbo.json", "gpt-3.5-turbo", 0.8),
)
_PRICE_OR_OPTIONS = re.compile(r"( with |, and price lower than ).*$")


def instruction_query(instruction: str) -> str:
    """The search a reader of the instruction types: its words before the options and price clause."""
    words = _PRICE_OR_OPTIONS.sub("", instruction).replace("[", " ").replace("]", " ").split()
    return " ".join(w for w in words if w.lower() not in ("find", "me", "i", "want", "need", "a", "an"))[:120]


def teacher_episode(env: TextEnv, task_id: str, model: str, error_rate: float, seed: int = 0) -> Trajectory:
    """One episode of the fallible shopper on ``task_id`` (``env`` must have an oracle: ``webshop``)."""
    rng = random.Random(f"{model}/{seed}/{task_id}")
    mistake = rng.choice(("other item", "no options")) if rng.random() < error_rate else None
    searched = False

    def act(observation: str) -> tuple[str, str]:
        nonlocal searched
        page = env.page  # type: ignore[attr-defined]
        if page == "start" and not searched:
            searched = True
            action = f"search[{instruction_query(env.instruction())}]"  # type: ignore[attr-defined]
            return f"I should search for {instruction_query(env.instruction())}.", action  # type: ignore[attr-defined]
        if page == "results" and mistake == "other item":
            listed = [c for c in env._clickables() if re.fullmatch(r"b[0-9a-z]{9}", c)]  # type: ignore[attr-defined]
            others = [a for a in listed if a != env.goal.asin.lower()]  # type: ignore[attr-defined]
            if others:
                action = displayed(f"click[{others[0]}]", observation)
                return thought_for(action), action
        if page == "item" and mistake is not None:
            return thought_for("click[Buy Now]"), "click[Buy Now]"
        action = displayed(env.oracle_action(), observation)  # type: ignore[attr-defined]
        return thought_for(action), action

    return play_episode(env, task_id, (), act, Provenance(source=model, model=model))


def write_teacher_files(env: TextEnv, out_dir: Path, task_ids: list[str], seed: int = 0) -> dict[str, list[Trajectory]]:
    """Both teachers' files for ``task_ids`` under ``out_dir``; the episodes written, by file name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, model, error_rate in TEACHERS:
        runs = [teacher_episode(env, t, model, error_rate, seed) for t in task_ids]
        (out_dir / name).write_text(json.dumps([eef_expert_record(r, model=model) for r in runs], indent=1))
        written[name] = runs
    return written


def main() -> None:
    from eef.envs.registry import make

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("-o", "--option", action="append", default=[], help="webshop's option KEY=VALUE (YAML)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    options = {k: yaml.safe_load(v) for k, _, v in (o.partition("=") for o in args.option)}
    env = make("webshop", **options)
    tasks = env.task_ids(args.split)[: args.tasks]
    for name, runs in write_teacher_files(env, args.out_dir, tasks, args.seed).items():
        print(f"{args.out_dir / name}: {len(runs)} episodes, {sum(r.success for r in runs)} successes")


if __name__ == "__main__":
    main()
