"""Tuning: the guide's six-step loop, run by itself. ``loop.Tuner`` carries it out; the decisions are pure
(``steps``, ``policy``, ``judge``, ``feasible``, ``bound``); ``patch`` writes the result into the script.
"""

from pipetune.tune.loop import Tuner, apply_patch, confirmation_line
from pipetune.tune.policy import ModelGuided, Proposal, SearchPolicy, View
from pipetune.tune.result import TuneResult, result_of
from pipetune.tune.study import Role, Study, Trial, Verdict, trial_payload

__all__ = [
    "ModelGuided",
    "Proposal",
    "Role",
    "SearchPolicy",
    "Study",
    "Trial",
    "TuneResult",
    "Tuner",
    "Verdict",
    "View",
    "apply_patch",
    "confirmation_line",
    "result_of",
    "trial_payload",
]
