"""Tuning: the guide's six-step loop, run by itself. ``loop.Tuner`` carries it out; the decisions are pure
(``steps``, ``policy``, ``judge``, ``feasible``, ``predict``, ``bound``); ``patch`` writes the result into the script.
"""

from pipetune.tune.loop import Tuner
from pipetune.tune.policy import ModelGuided, Proposal, SearchPolicy, View
from pipetune.tune.result import TuneResult, result_of
from pipetune.tune.study import Study, Trial, Verdict

__all__ = [
    "ModelGuided",
    "Proposal",
    "SearchPolicy",
    "Study",
    "Trial",
    "TuneResult",
    "Tuner",
    "Verdict",
    "View",
    "result_of",
]
