"""The methods as pure functions: SFT-POS, RFT (xK) and EEF labelling, solutions and selection."""

from eef.methods.labels import (
    BENEFICIAL,
    HARMFUL,
    NEUTRAL,
    NEUTRAL_MODES,
    recovery_states,
    segment_labels,
    simulation_states,
    solution_masks,
)
from eef.methods.solutions import (
    SELECTION_RULES,
    Analysis,
    PositiveRepository,
    Solution,
    analyse,
    analyse_all,
    eef_solutions,
    expert_demonstrations,
    select,
    self_solutions,
    state_positions,
)

# the built-in methods in the report's order (``methods.run`` may also name registered ones)
METHODS = ("sft_pos", "rft", "rft_k", "nat", "eto", "eef")
# what ``methods.run`` runs by default: the EEF paper's own comparison (NAT and ETO are further baselines)
DEFAULT_RUN = ("sft_pos", "rft", "rft_k", "eef")

__all__ = [
    "BENEFICIAL",
    "DEFAULT_RUN",
    "HARMFUL",
    "METHODS",
    "NEUTRAL",
    "NEUTRAL_MODES",
    "SELECTION_RULES",
    "Analysis",
    "PositiveRepository",
    "Solution",
    "analyse",
    "analyse_all",
    "eef_solutions",
    "expert_demonstrations",
    "recovery_states",
    "segment_labels",
    "select",
    "self_solutions",
    "simulation_states",
    "solution_masks",
    "state_positions",
]
