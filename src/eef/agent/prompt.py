"""The ReAct prompt: an instruction per environment and an optional one-shot example.

The prompt is the context before the first observation; it is stored in every trajectory, so
training renders exactly the conversation the policy saw when it acted. Observations go to the
model verbatim as user messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eef.agent.parse import format_turn
from eef.trajectory import Message

if TYPE_CHECKING:  # the environments' package is not needed to build a prompt
    from eef.envs.protocol import TextEnv

_WEB_INSTRUCTION = (
    "You are shopping on a website for the item the instruction describes. Each turn, answer with "
    "one line 'Thought: ...' (your reasoning) and one line 'Action: ...'. Actions: "
    "search[keywords] while a search box is shown, and click[value] to press a button or item id "
    "shown on the page (e.g. click[Next >], click[< Prev], click[Back to Search], an item id, an "
    "option such as a color or size, click[Buy Now]). Open items that may match, choose the options "
    "the instruction asks for, and buy the item that matches it within the price limit."
)

_GENERIC_INSTRUCTION = (
    "You act in a text environment to complete the task the first observation describes. Each "
    "turn, answer with one line 'Thought: ...' (your reasoning) and one line 'Action: ...' (one "
    "action the environment accepts)."
)

# (observation, thought, action) exchanges shown before the task; the example shop is not any
# environment's catalog, so it teaches the format without leaking answers.
_WEB_EXAMPLE = (
    (
        "WebShop [SEP] Instruction: [SEP] i need a blue wool scarf for winter, and price lower than "
        "30.00 dollars [SEP] Search",
        "I should search for a blue wool scarf.",
        "search[blue wool scarf]",
    ),
    (
        "Instruction: [SEP] i need a blue wool scarf for winter, and price lower than 30.00 dollars "
        "[SEP] Back to Search [SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] X0001 [SEP] wool "
        "scarf, knitted [SEP] $24.00 [SEP] X0002 [SEP] cotton scarf [SEP] $9.00",
        "X0001 is a wool scarf under 30 dollars.",
        "click[X0001]",
    ),
    (
        "Instruction: [SEP] i need a blue wool scarf for winter, and price lower than 30.00 dollars "
        "[SEP] Back to Search [SEP] < Prev [SEP] color [SEP] blue [SEP] grey [SEP] wool scarf, knitted "
        "[SEP] Price: $24.00 [SEP] Rating: N.A. [SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now",
        "The instruction asks for blue.",
        "click[blue]",
    ),
    ("You have clicked blue.", "The item matches; buy it.", "click[Buy Now]"),
)

INSTRUCTIONS = {"shop": _WEB_INSTRUCTION, "webshop": _WEB_INSTRUCTION}
EXAMPLES = {"shop": _WEB_EXAMPLE, "webshop": _WEB_EXAMPLE}


@dataclass(frozen=True)
class PromptConfig:
    """How to open a conversation.

    Attributes:
        instruction: the system instruction; None takes the environment's default.
        one_shot: show a worked example episode before the task.
        system_role: put the instruction in a system message; False puts it in a first user
            message answered by ``OK`` (for chat templates without a system role, as ETO does).
    """

    instruction: str | None = None
    one_shot: bool = False
    system_role: bool = True


DEFAULT_PROMPT = PromptConfig()


def build_prompt(
    env_name: str,
    config: PromptConfig = DEFAULT_PROMPT,
    env: TextEnv | None = None,
) -> tuple[Message, ...]:
    """The messages before the first observation.

    An environment brings its own text through its ``agent_instruction`` and ``agent_example``
    (see :class:`eef.envs.protocol.TextEnv`); ``config.instruction`` overrides the instruction.
    """
    instruction = (
        config.instruction
        or (env.agent_instruction if env is not None else None)
        or INSTRUCTIONS.get(env_name, _GENERIC_INSTRUCTION)
    )
    if config.system_role:
        messages = [Message("system", instruction)]
    else:
        messages = [Message("user", instruction), Message("assistant", "OK")]
    if config.one_shot:
        example = (env.agent_example if env is not None else None) or EXAMPLES.get(env_name)
        if not example:
            raise ValueError(f"no one-shot example for environment {env_name!r}; set one_shot: false")
        for observation, thought, action in example:
            messages += [Message("user", observation), Message("assistant", format_turn(thought, action))]
        messages.append(Message("user", "That was an example. Now the real task."))
        messages.append(Message("assistant", "OK"))
    return tuple(messages)
