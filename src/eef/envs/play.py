"""One episode played at a terminal (``eef env play``): a person types the actions, or the oracle acts.

Each action is asked for with its step against the episode's limit (``Action (step 3/10): ``). An
action the environment did not take (``info["valid"]`` False) is named as invalid, its page shown
again only when it changed. End of input (Ctrl-D) and Ctrl-C end the episode early with a
newline and one summary line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from eef.envs.protocol import SupportsOracle, TextEnv
from eef.errors import EefError

INTERRUPTED = 130  # the exit status of a program stopped by Ctrl-C (128 + SIGINT), as shells report it


def enable_line_editing() -> None:
    """Give ``input()`` line editing and history (arrow keys, Ctrl-R) where Python has readline."""
    with contextlib.suppress(ImportError):  # Windows has none: input() still reads lines, without editing
        import readline  # noqa: F401  # importing it is what hooks it into input()


def play_episode(
    env: TextEnv,
    task_id: str,
    write: Callable[[str], None],
    read_action: Callable[[str], str] | None = None,
) -> int:
    """Play one episode of ``task_id``, writing each line with ``write``.

    Args:
        env: the environment.
        task_id: the task to play.
        write: prints one line.
        read_action: ``input``-like: shows its prompt and returns the line typed, raising
            EOFError at the end of input and KeyboardInterrupt on Ctrl-C. None: the oracle acts.

    Returns:
        The exit status: 0 when the episode or the input ended, :data:`INTERRUPTED` after Ctrl-C.
    """
    ask = read_action or _oracle_reader(env, write)
    step = 0
    try:
        observation = env.reset(task_id)
        write(f"Observation: {observation}")
        while True:
            if read_action is not None:
                write(f"Valid: {', '.join(env.available_actions())}")
            action = ""
            while not action:  # a blank line takes no step
                action = ask(f"Action (step {step + 1}/{env.max_steps}): ").strip()
            result = env.step(action)
            step += 1
            valid = result.info.get("valid") is not False
            if not valid:
                write(f"Invalid action {action!r}: not one of the valid actions (the step counts all the same)")
            if valid or result.observation != observation:  # an invalid action mostly leaves the page as it was
                write(f"Observation: {result.observation}")
            observation = result.observation
            if result.done:
                outcome = "success" if env.is_success(result.reward) else "failure"
                cut = ", out of steps" if result.truncated else ""
                write(f"Reward: {result.reward} ({outcome}{cut}) in {step} of {env.max_steps} steps")
                return 0
    except (EOFError, KeyboardInterrupt) as stop:
        interrupted = isinstance(stop, KeyboardInterrupt)
        write("")  # the prompt left the cursor on its line
        how = "Stopped (Ctrl-C)" if interrupted else "Input ended"
        write(f"{how} after {step} of {env.max_steps} steps; the episode did not end")
        return INTERRUPTED if interrupted else 0


def _oracle_reader(env: TextEnv, write: Callable[[str], None]) -> Callable[[str], str]:
    """A ``read_action`` that asks the oracle and writes its action after the prompt, as if typed."""
    if not isinstance(env, SupportsOracle):
        raise EefError(f"environment {env.name!r} has no oracle (oracle_action)")

    def read(prompt: str) -> str:
        action = env.oracle_action()
        write(prompt + action)
        return action

    return read
