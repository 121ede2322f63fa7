"""``cellar arch``: build an architecture without training it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


def cellar(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("cellar")), *args], capture_output=True, text=True, timeout=300
    )


def test_nb201_at_the_benchmarks_size_on_cifar_shaped_digits() -> None:
    done = cellar("arch", "nb201", ALL_3X3, "--param", "channels=16", "--param", "cells_per_stage=5",
                  "--dataset", "digits32", "--json")
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert described["params"] == 1_531_546  # NAS-Bench-201's own count for this cell
    assert described["flops"] == 440_239_360  # 2 x the benchmark's 220.12 M multiply-adds, to 0.01 %
    assert described["in_shape"] == [1, 3, 32, 32] and described["output_shape"] == [1, 10]
    assert "class Net" in described["nn_code"] and described["nn"].startswith("nb201-")


def test_a_k_class_network_without_a_dataset() -> None:
    done = cellar("arch", "nb201", RESNET, "--classes", "100")
    assert done.returncode == 0, done.stderr
    assert "parameters 565,236" in done.stdout  # the reference ResNet cell with 100 classes
    assert "def train_setup" in done.stdout


def test_bad_input_is_an_error_that_says_what_is_wrong() -> None:
    done = cellar("arch", "nb201", "|nor_conv_3x3~0|")
    assert done.returncode == 1 and "has 1 node segments, expected 3" in done.stderr
    done = cellar("arch", "gnn", "gcn(h=8,act=relu,drop=0.0);skip=none;readout=mean")
    assert done.returncode == 1 and "needs --dataset or --in-shape" in done.stderr
    done = cellar("arch", "nb201", RESNET, "--param", "channels")
    assert done.returncode == 2 and "is not KEY=VALUE" in done.stderr


def test_a_gnn_on_the_karate_club() -> None:
    done = cellar("arch", "gnn", "gcn(h=8,act=relu,drop=0.0)|gcn(h=8,act=relu,drop=0.0);skip=none;readout=mean",
                  "--dataset", "karate", "--json")
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert described["output_shape"] == [34, 4]  # one row of logits per member
    # GCN(34->8) + GCN(8->8) + linear(8->4): weights and biases
    assert described["params"] == 34 * 8 + 8 + 8 * 8 + 8 + 8 * 4 + 4
