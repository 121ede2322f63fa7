"""Compacted model code for prompts: the same program, less text."""

from __future__ import annotations

import ast

from search_spaces import get_search_space
from service.lemur.prompts import compact_code
from tests.search_spaces.lemur_models import MLP_CODE


def _same_program(a: str, b: str) -> bool:
    def normal(source: str) -> str:
        tree = ast.parse(source)
        for node in ast.walk(tree):
            for field in ("body", "orelse", "finalbody"):
                body = getattr(node, field, None)
                if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
                    kept = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
                    setattr(node, field, kept or ([ast.Pass()] if field == "body" else []))
        return ast.dump(tree)

    return normal(a) == normal(b)


def test_generated_and_hand_written_models_lose_comments_and_docstrings_only() -> None:
    nb201 = get_search_space("nb201", {"channels": 4, "cells_per_stage": 1}).nn_code(
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    )
    for source in (nb201, MLP_CODE):
        compact = compact_code(source)
        assert _same_program(source, compact)
        assert len(compact) < len(source)
        assert "#" not in "".join(line.split("'")[0].split('"')[0] for line in compact.splitlines())
        assert '"""' not in compact and "\n\n" not in compact
    # and it still builds the same network
    import torch

    from workers.nn_module import load_nn_module

    prm = {"lr": 0.05, "momentum": 0.9, "dropout": 0.1}
    nets = [load_nn_module(code, "x").Net((1, 1, 8, 8), (10,), prm, torch.device("cpu")) for code in (nb201, compact_code(nb201))]
    counts = [sum(p.numel() for p in net.parameters()) for net in nets]
    assert counts[0] == counts[1] > 0


def test_code_that_does_not_parse_keeps_its_lines() -> None:
    broken = "def f(:\n    # a comment\n\n    return 1\n"
    assert compact_code(broken) == "def f(:\n    return 1"
