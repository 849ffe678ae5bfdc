"""Long-tail CIFAR-10 loss-function tuning (SPEC §7.2): x = VS-loss hyperparameters, y = a CNN.

    g_i(x, y) = mean_s omega_{c_s} * CE(Delta ⊙ z_s + iota, c_s) + wd/2 ||y||^2   (train split)
    f_i(x, y) = class-balanced CE(z_s, c_s)                                       (validation)

with z = the network's logits (weights y) and the per-class VS parameters (Kini et al. 2021)
Delta = 2 sigmoid(d), iota, and optionally omega = C softmax(w). [OURS] Delta is 2 sigmoid(d)
rather than FedNest's sigmoid(d) so that at the initial d = 0, iota = 0 the loss is exactly
plain cross entropy: the untuned methods (FedAvg without tuning and the single-level sub-model
baselines, whose x never moves because f does not depend on x) train with plain CE. The
class-balanced weights are proportional to 1 / (global long-tail count of the class),
normalised to mean 1. ``wd`` (weight decay) makes the inner problem strongly convex in the
limit of a linearised network, as the theory assumes.

Data: the long-tailed training set n_c = 5000 (1/ratio)^(c/9), IID shards over clients, each
client's share split 80/20 per class into train (inner) and validation (outer) parts; the
balanced 10,000 test images for evaluation (``curve_test`` of them, fixed by ``seed``, at
intermediate points; all at the last round). No augmentation. Our CIFAR-10 was decoded from a
quality-75 JPEG copy (data/PROVENANCE.md); every report says so.

Only y is masked (SPEC §7.2): x is not in any channel layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rabo_bench.data.cifar import (
    ARCHIVE,
    client_splits,
    load_cifar10,
    long_tail_counts,
    long_tail_indices,
)
from rabo_bench.models.compute import PRECISIONS, Compute
from rabo_bench.models.networks import (
    NetSpec,
    head_logits,
    init,
    init_head,
    resnet18_cifar,
    resnet_cifar,
)
from rabo_bench.models.networks import channel_layers as net_layers
from rabo_bench.params import Params, on_device
from rabo_bench.problems.base import BilevelProblem, with_curve_accuracy
from rabo_bench.problems.ranges import COUNT, NON_NEGATIVE, SEED, Checked, OneOf, Range, setting
from rabo_bench.problems.registry import register_problem
from rabo_bench.submodel.channels import ChannelLayers

NETWORKS = ("resnet8", "resnet20", "resnet18")
CLASSES = 10


@dataclass(frozen=True)
class LossTuningConfig(Checked):
    ratio: float = setting(100.0, Range(1))  # imbalance n_max / n_min
    num_clients: int = setting(10, COUNT)
    val_fraction: float = setting(0.2, Range(0, 1, low_open=True, high_open=True))
    network: str = setting("resnet8", OneOf(NETWORKS))  # resnet8 | resnet20 (CPU) | resnet18
    width: int = setting(16, COUNT)  # first stage width of resnet8/20 (16 -> 16-32-64)
    batch_size: int = setting(64, COUNT)
    weight_decay: float = setting(5e-4, NON_NEGATIVE)
    tune_weights: bool = False  # also tune omega
    curve_test: int = setting(2000, COUNT)  # test images at intermediate evaluation points
    seed: int = setting(0, SEED)  # long-tail subsample, shards, splits and the curve test subset

    @property
    def net(self) -> NetSpec:
        if self.network == "resnet18":
            return resnet18_cifar()
        widths = (self.width, 2 * self.width, 4 * self.width)
        return resnet_cifar(widths, blocks=1 if self.network == "resnet8" else 3, in_channels=3)


class LossTuningProblem(BilevelProblem):
    """x = {"d", "iota"[, "w"]} (one entry per class), y = network + {"fc.weight", "fc.bias"}."""

    dtype = torch.float32
    physical_submodels = True
    reports_accuracy = True
    movable = True
    precisions = PRECISIONS

    def __init__(self, config: LossTuningConfig) -> None:
        self.config = config
        self.num_clients = config.num_clients
        data = load_cifar10()
        rng = torch.Generator().manual_seed(config.seed)
        counts = long_tail_counts(ratio=config.ratio, classes=CLASSES)
        chosen = long_tail_indices(data.y_train, counts, rng)
        self.splits = client_splits(
            chosen, data.y_train, config.num_clients, config.val_fraction, rng=rng
        )
        self._images, self._labels = data.x_train, data.y_train
        self._test_images, self._test_labels = data.x_test, data.y_test
        # The test set is stored sorted by class and BatchNorm normalises with the statistics
        # of the evaluated chunk, so every evaluation walks a fixed random order: chunks of a
        # sorted order would be single-class batches (measured: 10-11% accuracy for models
        # at 23-26% on random chunks).
        self.test_order = torch.randperm(len(data.y_test), generator=rng)
        self.curve_subset = self.test_order[: config.curve_test]
        inverse = 1.0 / torch.tensor(counts, dtype=self.dtype)
        self.balanced_weights = inverse / inverse.mean()
        self.counts = counts

    def place(self, compute: Compute) -> None:
        """Images, labels and the class weights on ``compute.device`` (the clients' splits and
        the test order, index sets that sampling reads, stay on the CPU)."""
        super().place(compute)
        device = compute.device
        self._images, self._labels = self._images.to(device), self._labels.to(device)
        self._test_images = self._test_images.to(device)
        self._test_labels = self._test_labels.to(device)
        self.balanced_weights = self.balanced_weights.to(device)

    def init_params(self, rng: torch.Generator) -> tuple[Params, Params]:
        """On the problem's device; the network drawn from ``rng`` (a CPU generator: the same
        values on every device), then moved there."""
        zeros = torch.zeros(CLASSES, dtype=self.dtype, device=self.compute.device)
        x = {"d": zeros.clone(), "iota": zeros.clone()}
        if self.config.tune_weights:
            x["w"] = zeros.clone()
        y = init(self.config.net, rng, self.dtype)
        y.update(init_head(self.config.net, CLASSES, rng, self.dtype, "fc"))
        return x, on_device(y, self.compute.device)

    def channel_layers(self, x: Params, y: Params) -> ChannelLayers:
        readers = (("y", "fc.weight", 1),)
        return ChannelLayers(tuple(net_layers(self.config.net, "y", readers)))

    # -- data -----------------------------------------------------------------------------
    def _batch(self, indices: torch.Tensor, rng: torch.Generator):
        pick = indices[torch.randperm(len(indices), generator=rng)[: self.config.batch_size]]
        return self._images[pick], self._labels[pick]

    def sample_lower_batch(self, client, rng):
        return self._batch(self.splits[client].train, rng)

    def sample_upper_batch(self, client, rng):
        return self._batch(self.splits[client].val, rng)

    def sample_task_batch(self, client, rng):
        """Single-level methods train on the train split only (no tuning, x never moves)."""
        return self.sample_lower_batch(client, rng)

    # -- losses ---------------------------------------------------------------------------
    def _logits(self, y: Params, images: torch.Tensor) -> torch.Tensor:
        return head_logits(self.config.net, y, y, images, "fc", self.compute)

    def lower_loss(self, client, x, y, batch):
        images, labels = batch
        logits = 2 * torch.sigmoid(x["d"]) * self._logits(y, images) + x["iota"]
        per_sample = F.cross_entropy(logits, labels, reduction="none")
        if "w" in x:
            per_sample = per_sample * (CLASSES * torch.softmax(x["w"], 0))[labels]
        decay = 0.5 * self.config.weight_decay * sum(t.pow(2).sum() for t in y.values())
        return per_sample.mean() + decay

    def upper_loss(self, client, x, y, batch):
        images, labels = batch
        return F.cross_entropy(self._logits(y, images), labels, weight=self.balanced_weights)

    def task_loss(self, client, x, y, batch):
        return self.lower_loss(client, {k: v.detach() for k, v in x.items()}, y, batch)

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self, x: Params, y: Params) -> dict:
        return self._accuracy(x, y, self.curve_subset)

    def evaluate_final(self, x: Params, y: Params) -> dict:
        """All test images, with the curve subset's accuracy in the details."""
        return with_curve_accuracy(self._accuracy(x, y, self.test_order), self.evaluate(x, y))

    @torch.no_grad()
    def _accuracy(self, x: Params, y: Params, subset: torch.Tensor) -> dict:
        predictions = torch.cat(
            [self._logits(y, self._test_images[chunk]).argmax(-1) for chunk in _chunks(subset)]
        )
        labels = self._test_labels[subset]
        correct = (predictions == labels).double()
        per_class = [
            float(correct[labels == c].mean()) if bool((labels == c).any()) else None
            for c in range(CLASSES)
        ]  # None (JSON null) for a class the subset happens not to contain
        half = CLASSES // 2
        details = {
            "test_images": len(subset),
            "per_class": per_class,
            "head": _mean_present(per_class[:half]),  # classes 0-4: the frequent ones
            "tail": _mean_present(per_class[half:]),
            "delta": (2 * torch.sigmoid(x["d"])).tolist(),
            "iota": x["iota"].tolist(),
        }
        n = len(subset)
        acc = float(correct.mean())
        return {
            "accuracy": acc,
            "accuracy_ci95": 1.96 * (acc * (1 - acc) / n) ** 0.5,
            "details": json.dumps(details),
        }


def _chunks(subset: torch.Tensor, size: int = 1000) -> list[torch.Tensor]:
    """Evaluation batches (BatchNorm statistics are taken over each)."""
    return [subset[i : i + size] for i in range(0, len(subset), size)]


def _mean_present(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


register_problem("cifar_lt", LossTuningConfig, LossTuningProblem, lambda config: (ARCHIVE,))
