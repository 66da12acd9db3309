"""Analysis of recorded runs: pure functions over :class:`pipetune.model.Run`, never importing Ray."""

from pipetune.diagnose.bottleneck import Bottleneck, OperatorRate, find_bottleneck, operator_rates

__all__ = ["Bottleneck", "OperatorRate", "find_bottleneck", "operator_rates"]
