"""Jobs: the spec a client submits, and the machinery that runs its search.

- ``spec``: ``JobCreate``, the validated job body.
- ``manager``: ``JobManager``, the thread that admits jobs (leases, resources) and drives them.
- ``runner``: ``JobRunner``, one job's state machine; ``reports``: its running trials.
- ``gate``: the reproducible ask/tell order between a runner and its Optuna study.
- ``objectives``: the study, and objective values read off a trial's metrics.
- ``cache``: the cross-job result cache key; ``identity``: architecture hashes.
- ``strategies``: samplers, pruners, their parameters, Pareto helpers.
"""

from .manager import JobManager
from .runner import JobRunner
from .spec import JobCreate

__all__ = ["JobCreate", "JobManager", "JobRunner"]
