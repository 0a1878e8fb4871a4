"""Oracle episodes: does a perfect agent reach full reward? Checks an installation and fidelity."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from eef.envs.protocol import SupportsOracle, TextEnv
from eef.errors import EefError
from eef.progress import progress_bar


@dataclass
class VerifyReport:
    """Outcome of :func:`verify`.

    Attributes:
        episodes: oracle episodes run.
        successes: episodes whose final reward counts as success.
        mean_reward: mean final reward.
        capped_by_quirk: episodes that did everything right but scored below success
            (WebShop: the option quirk; see docs/shop.md).
        unfinished: episodes that ran out of steps (the oracle could not reach the goal).
        failures: task id -> final reward of every unsuccessful episode.
    """

    episodes: int = 0
    successes: int = 0
    mean_reward: float = 0.0
    capped_by_quirk: int = 0
    unfinished: int = 0
    failures: dict[str, float] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    def as_dict(self) -> dict:
        return {
            "episodes": self.episodes,
            "success_rate": self.success_rate,
            "mean_reward": self.mean_reward,
            "successes": self.successes,
            "capped_by_quirk": self.capped_by_quirk,
            "unfinished": self.unfinished,
        }


def verify(env: TextEnv, task_ids: Iterable[str], *, progress: bool = False) -> VerifyReport:
    """Play ``env.oracle_action()`` from reset to the end of each task and tally the rewards."""
    if not isinstance(env, SupportsOracle):
        raise EefError(f"environment {env.name!r} has no oracle (oracle_action) to verify with")
    task_ids = list(task_ids)
    report = VerifyReport()
    total = 0.0
    bar = progress_bar(len(task_ids), f"verify {env.name}", "ep", progress)
    for task_id in task_ids:
        env.reset(task_id)
        while True:
            result = env.step(env.oracle_action())
            if result.done:
                break
        bar.update(1)
        report.episodes += 1
        total += result.reward
        if env.is_success(result.reward):
            report.successes += 1
            continue
        report.failures[task_id] = result.reward
        if result.truncated:
            report.unfinished += 1
        else:
            report.capped_by_quirk += 1
    bar.close()
    report.mean_reward = total / report.episodes if report.episodes else 0.0
    return report
