"""LEMUR models written for other input sizes train on Cellar's datasets through a sized transform."""

from __future__ import annotations

import pytest

from search_spaces import nn_id
from search_spaces.errors import IncompatibleDatasetError
from tests.search_spaces.lemur_models import MLP_CODE
from workers.protocol import TrialPayload
from workers.runner import TrialRunner, run_trial

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

#: a LEMUR model for SIZE x SIZE inputs, as its author would write it; it refuses any other size
SIZED_CNN = '''
import torch
from torch import nn

SIZE = __SIZE__


def supported_hyperparameters():
    return {"lr", "momentum"}


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        assert tuple(in_shape[-2:]) == (SIZE, SIZE), f"built for {SIZE}x{SIZE} inputs, got {in_shape}"
        self.device = device
        self.features = nn.Sequential(
            nn.Conv2d(in_shape[1], 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.head = nn.Linear(16 * 4 * 4, out_shape[0])

    def forward(self, x):
        assert tuple(x.shape[-2:]) == (SIZE, SIZE), f"expected {SIZE}x{SIZE} inputs, got {tuple(x.shape)}"
        return self.head(self.features(x))

    def train_setup(self, prm):
        self.to(self.device)
        self.criteria = (nn.CrossEntropyLoss().to(self.device),)
        self.optimizer = torch.optim.SGD(self.parameters(), lr=prm["lr"], momentum=prm["momentum"])

    def learn(self, train_data):
        self.train()
        total = 0.0
        for inputs, labels in train_data:
            inputs, labels = inputs.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            loss = self.criteria[0](self(inputs), labels)
            loss.backward()
            self.optimizer.step()
            total += loss.item()
        return total / len(train_data)
'''


def payload(code: str, dataset: str, transform: str, batch: int = 32) -> TrialPayload:
    prm = {"lr": 0.05, "momentum": 0.9, "batch": batch, "epoch": 1, "transform": transform}
    return TrialPayload(
        trial_id=1, job_id=1, number=0, nn_name=nn_id(code), nn_code=code, dataset=dataset,
        prm=prm, epochs=1, seed=0, split_seed=0,
    )


def test_a_64x64_model_trains_on_digits32_through_norm_64_flip() -> None:
    code = SIZED_CNN.replace("__SIZE__", "64")
    setup, epochs, final = run_trial(payload(code, "digits32", "norm_64_flip"))
    assert setup["in_shape"] == [1, 3, 64, 64] and setup["out_shape"] == [10]
    assert setup["flops"] > 0 and epochs[0]["loss"] is not None
    assert epochs[0]["val_metric"] > 0.3 and final["test_metric"] > 0.3  # chance is 0.1
    again = run_trial(payload(code, "digits32", "norm_64_flip"))
    assert again[1][0]["loss"] == epochs[0]["loss"]  # the seed fixes the flips too
    assert again[2]["test_metric"] == final["test_metric"]


def test_the_model_sees_299x299_under_norm_299() -> None:
    runner = TrialRunner()
    setup = runner.setup(payload(SIZED_CNN.replace("__SIZE__", "299"), "digits32", "norm_299", batch=4).to_dict())
    assert setup["in_shape"] == [1, 3, 299, 299]
    runner.reset()


def test_an_image_transform_on_a_table_is_an_error_that_says_what_to_use() -> None:
    with pytest.raises(IncompatibleDatasetError, match=r"transform 'norm_64' works on images .* 'iris'.* use 'norm'"):
        run_trial(payload(MLP_CODE, "iris", "norm_64"))
