"""Recording: runs an unmodified script under the recorder and stores the run as it goes.

The face of the package: ``record(Launch(...), store)`` runs a script and returns the stored Run; ``shared_ray``
and ``scratch`` give a series of runs (a study's trials, a batch-size search) one Ray and one sandbox. The
modules behind it are private: ``_child`` and ``probe`` run inside the user's driver, ``interpose`` turns
Ray Data calls into stages, ``_ray_compat`` is the only module that touches ``ray.data._internal``.
"""

from pipetune.record.launcher import Launch, Listener, check_script, record
from pipetune.record.nodes import local_gpus
from pipetune.record.shared import scratch, shared_ray

__all__ = ["Launch", "Listener", "check_script", "local_gpus", "record", "scratch", "shared_ray"]
