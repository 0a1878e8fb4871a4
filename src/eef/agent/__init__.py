"""The agent: ReAct prompting, tolerant action parsing and policy backends."""

from eef.agent.parse import ParsedTurn, parse_turn
from eef.agent.policy import Completion, GenerationRequest, Policy, SamplingParams
from eef.agent.prompt import PromptConfig, build_prompt

__all__ = [
    "Completion",
    "GenerationRequest",
    "ParsedTurn",
    "Policy",
    "PromptConfig",
    "SamplingParams",
    "build_prompt",
    "parse_turn",
]
