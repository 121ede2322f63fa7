"""The generation loop without an LLM: a scripted generator that learns from Cellar's answers.

Each round it reads the best models so far (``GET /v1/prompt-examples``), writes new model code by
mutating theirs through ``ast`` (a hidden width scaled wherever it is used, an activation swapped,
or one layer's width alone, which may break the shapes), submits every candidate at once
(``POST /v1/submissions``), and reads each result as it finishes: a success enters the store and
so the next round's examples; a failure's structured ``kind`` tells the generator which of its
moves to stop making. A code-generating model takes the generator's place in a real pipeline:
the prompt is the examples, the answer the code, the feedback the failures.

    from service.client import CellarClient
    from service.lemur.generation import ScriptedGenerator, run_loop
    with CellarClient() as client:
        rounds = run_loop(client, ScriptedGenerator(seed=0), rounds=3, per_round=4,
                          task="img-classification", dataset="digits", metric="acc",
                          prm={"lr": 0.05, "momentum": 0.9, "batch": 64, "epoch": 1, "transform": "norm"})
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass, field
from typing import Any

from ..client import CellarClient

__all__ = ["MOVES", "Round", "ScriptedGenerator", "run_loop"]

#: the layers whose integer arguments are widths (in, out)
_LAYERS = frozenset({"Linear", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d", "LazyLinear"})
_ACTIVATIONS = ("ReLU", "GELU", "Tanh", "SiLU", "ELU")
#: what the generator may do to a parent's code
MOVES = ("scale_width", "swap_activation", "one_layer_width")


def _name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _width_constants(tree: ast.AST) -> list[ast.Constant]:
    """Integer literals given to a layer as a width: positional arguments of Linear, Conv, ..."""
    return [
        arg
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _name(node) in _LAYERS
        for arg in node.args[:2]
        if isinstance(arg, ast.Constant) and type(arg.value) is int and arg.value > 1
    ]


@dataclass
class ScriptedGenerator:
    """Writes candidates from examples; stops making the moves whose children keep failing."""

    seed: int = 0
    #: move -> failure kinds its children had
    failures: dict[str, list[str]] = field(default_factory=dict)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def moves(self) -> list[str]:
        """The moves still allowed: a move is dropped once two of its children failed their shapes."""
        return [m for m in MOVES if self.failures.get(m, []).count("shape") < 2] or ["scale_width"]

    def mutate(self, code: str, move: str) -> str | None:
        """``code`` with ``move`` applied, or None when the code offers nothing to apply it to."""
        tree = ast.parse(code)
        if move == "swap_activation":
            calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _name(n) in _ACTIVATIONS]
            if not calls:
                return None
            new = self.rng.choice([a for a in _ACTIVATIONS if a != _name(calls[0])])
            for call in calls:
                if isinstance(call.func, ast.Attribute):
                    call.func.attr = new
                elif isinstance(call.func, ast.Name):
                    call.func.id = new
            return ast.unparse(tree)
        widths = _width_constants(tree)
        hidden = sorted({c.value for c in widths})
        if not hidden:
            return None
        old = self.rng.choice(hidden)
        new = max(2, int(old * self.rng.choice((0.5, 0.75, 1.5, 2.0))))
        chosen = [c for c in widths if c.value == old]
        for constant in chosen if move == "scale_width" else chosen[:1]:
            constant.value = new
        return ast.unparse(tree)

    def write(self, examples: list[dict[str, Any]], count: int) -> list[tuple[str, str, str]]:
        """``count`` candidates as ``(move, parent name, code)``, each parent's code mutated."""
        candidates: list[tuple[str, str, str]] = []
        seen = {example["code"] for example in examples}
        for _ in range(count * 10):
            if len(candidates) == count:
                break
            parent, move = self.rng.choice(examples), self.rng.choice(self.moves())
            code = self.mutate(parent["code"], move)
            if code is not None and code not in seen:
                seen.add(code)
                candidates.append((move, parent["nn"], code))
        return candidates

    def learn(self, move: str, result: dict[str, Any]) -> None:
        if result["status"] != "ok":
            self.failures.setdefault(move, []).append(result["failure"]["kind"])


@dataclass
class Round:
    examples: list[str]
    submitted: list[dict[str, Any]]
    results: list[dict[str, Any]]

    @property
    def successes(self) -> list[str]:
        return [r["name"] for r in self.results if r["status"] == "ok"]


def run_loop(
    client: CellarClient, generator: ScriptedGenerator, *, rounds: int, per_round: int, task: str, dataset: str,
    metric: str, prm: dict[str, Any], k: int = 5, prefix: str = "gen",
) -> list[Round]:  # fmt: skip
    """``rounds`` rounds of: examples, candidates, submission, results, feedback."""
    done: list[Round] = []
    for _ in range(rounds):
        examples = client.prompt_examples(task=task, dataset=dataset, metric=metric, k=k)
        if not examples:
            raise ValueError(f"no model of {task}/{dataset}/{metric} with code to start from: submit one first")
        candidates = generator.write(examples, per_round)
        bodies = [
            {"nn_code": code, "task": task, "dataset": dataset, "metric": metric, "prm": prm, "prefix": prefix}
            for _, _, code in candidates
        ]
        submitted = client.submit_models(bodies)
        move_of = {s["id"]: move for s, (move, _, _) in zip(submitted, candidates, strict=True)}
        results = []
        for finished in client.as_completed([s["id"] for s in submitted]):
            generator.learn(move_of[finished["id"]], finished["result"])
            results.append(finished["result"])
        done.append(Round([e["nn"] for e in examples], submitted, results))
    return done
