"""Text environments: the protocol, the registry, replay and the built-in environments."""

from eef.envs.builtin import check_shop_options, check_webshop_options, make_scienceworld, make_shop, make_webshop
from eef.envs.protocol import StepResult, TextEnv
from eef.envs.registry import EnvSpec, make, option_problems, register, registered, unregister
from eef.envs.replay import Divergence, ReplayResult, replay

register("shop", make_shop, check=check_shop_options)
register("webshop", make_webshop, check=check_webshop_options)
register("scienceworld", make_scienceworld)

__all__ = [
    "Divergence",
    "EnvSpec",
    "ReplayResult",
    "StepResult",
    "TextEnv",
    "make",
    "option_problems",
    "register",
    "registered",
    "replay",
    "unregister",
]
