"""``code``: search the hyperparameters of model source that follows LEMUR's contract."""

from .space import CodeSearchSpace, CodeSpaceParams, inspect_model_code

__all__ = ["CodeSearchSpace", "CodeSpaceParams", "inspect_model_code"]
