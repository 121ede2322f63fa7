"""Workers: the executor interface, the Ray executor and the trial runner (the only torch user)."""

from .executor import Executor, ExecutorEvent, TrialResources
from .protocol import TrialPayload

__all__ = ["Executor", "ExecutorEvent", "TrialPayload", "TrialResources"]
