"""The methods as pure functions: SFT-POS, RFT (xK) and EEF labelling, solutions and selection."""

from eef.methods.labels import (BENEFICIAL, HARMFUL, NEUTRAL, recovery_states, segment_labels, simulation_states,
                                solution_masks)
from eef.methods.solutions import (Analysis, PositiveRepository, Solution, analyse, analyse_all, eef_solutions,
                                   expert_demonstrations, select, self_solutions, state_positions)

__all__ = ["BENEFICIAL", "HARMFUL", "NEUTRAL", "Analysis", "PositiveRepository", "Solution", "analyse", "analyse_all",
           "eef_solutions", "expert_demonstrations", "recovery_states", "segment_labels", "select",
           "self_solutions", "simulation_states", "solution_masks", "state_positions"]
