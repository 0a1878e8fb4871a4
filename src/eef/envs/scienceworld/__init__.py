"""ScienceWorld (the ``scienceworld`` package's simulator) as an eef environment; see docs/scienceworld.md."""

from eef.envs.scienceworld.env import ScienceWorldEnv
from eef.envs.scienceworld.jvm import JvmPool

__all__ = ["JvmPool", "ScienceWorldEnv"]
