"""Recording: runs an unmodified script under the recorder and stores the run as it goes.

The face of the package: ``record(Launch(...), store)`` runs a script and returns the stored Run; ``shared_ray``
and ``scratch`` give a series of runs (a study's trials, a batch-size search) one Ray and one sandbox. The
modules behind it are private: ``_child`` and ``probe`` run inside the user's driver, ``interpose`` turns
Ray Data calls into stages, ``_ray_compat`` is the only module that touches ``ray.data._internal``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetune._faces import lazy

if TYPE_CHECKING:
    from pipetune.record._ray_compat import local_object_store
    from pipetune.record.launcher import Launch, Listener, StopRule, check_script, record
    from pipetune.record.nodes import local_gpus
    from pipetune.record.shared import scratch, shared_ray

# Loaded on first use: the recorded driver imports this package too, and needs none of the recorder's side.
_HOME = {"Launch": "launcher", "Listener": "launcher", "StopRule": "launcher", "check_script": "launcher",
         "record": "launcher", "local_gpus": "nodes", "local_object_store": "_ray_compat", "scratch": "shared",
         "shared_ray": "shared"}  # fmt: skip

__all__ = ["Launch", "Listener", "StopRule", "check_script", "local_gpus", "local_object_store", "record", "scratch",
           "shared_ray"]  # fmt: skip


__getattr__ = lazy(__name__, _HOME)
