"""Omniglot hyper-representation learning (SPEC §7.1): x = backbone, y = linear head.

Two readings of the inner variable (``reading``; docs/design.md "Omniglot" explains them):

* ``episode`` (default, SPEC §9 item 12): y is an N-way linear head and every episode is its own
  inner problem, warm-started from the client's masked aggregated y (``per_task_inner``):

      y_e*(x) = argmin_y g(x, y; e) = CE(head_y(phi_x(support_e)), episode labels) + reg/2 ||y||^2,
      F_i(x)  = E_e f(x, y_e*(x); e) = E_e CE(head_y_e*(phi_x(query_e)), episode labels),

  the hyper-representation problem (Franceschi et al. 2018; PZOBO's Omniglot): x is learned so
  that a head fitted to a support set does well on the same episode's query set. phi_x is
  unit-normalised per row (``head_features = "unit"``, the default), as the evaluation's heads
  read it, so g is (1 + reg)-smooth whatever the backbone; ``"raw"`` (the runs before commit
  b9f32dc) lets the exact hypergradient grow the features' scale until the inner steps diverge
  (docs/design.md, results/omniglot/cpu-estimators). A client
  draws ``tasks_per_batch`` episodes of its characters per estimate (the paper's meta-batch
  16) and averages over them. The single-level sub-model baselines train the backbone with the
  episodic prototypical loss [OURS]: a shared N-way head under per-episode label orders has no
  single-level meaning (its expected optimum is the symmetric head, where the backbone gets no
  gradient), and ProtoNet is the paper's single-level episodic learner (SPEC §6, option "labels
  remapped per episode").
* ``global`` (ablation, the reading of the committed runs before issue 14): ONE linear head
  over the C = 964 background characters with global labels, g = support CE + reg/2 ||y||^2,
  f = query CE of *other* episodes; single-level baselines train backbone and head jointly on
  support and query with global labels. Measured (issue 14): barely above joint training.

Episodes: N-way K-shot from client i's shard of characters (K support and 20 - K query drawings
per character, SPEC §7.1).

Evaluation (all methods and readings alike): fix the backbone x; for each test episode from the
20 evaluation alphabets fit a fresh N-way head by L2-regularised multinomial logistic
regression (weight ``reg``) on the unit-normalised support features, ``eval_steps`` gradient
steps from zero; report query accuracy over ``test_tasks`` episodes with a 95% CI
(``curve_tasks`` at intermediate evaluation points). The test episodes are fixed by ``seed``,
so every method and round sees the same ones.

Networks are width-parametric with batch-statistics normalisation, so the losses run on the
physically narrow sub-model (``physical_submodels``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from rabo_bench.data.episodes import Episode, sample_episode, shard_classes
from rabo_bench.data.omniglot import ARCHIVES, load_omniglot
from rabo_bench.models.compute import PRECISIONS, Compute
from rabo_bench.models.networks import (
    NetSpec,
    conv4,
    forward,
    init,
    init_head,
    linear_head,
    resnet12,
)
from rabo_bench.models.networks import channel_layers as net_layers
from rabo_bench.params import Params, on_device
from rabo_bench.problems.base import BilevelProblem, with_curve_accuracy
from rabo_bench.problems.ranges import COUNT, POSITIVE, SEED, Checked, OneOf, Range, setting
from rabo_bench.problems.registry import register_problem
from rabo_bench.submodel.channels import ChannelLayers

BACKBONES = ("conv4", "resnet12")
READINGS = ("episode", "global")
HEAD_FEATURES = ("unit", "raw")


@dataclass(frozen=True)
class FewShotConfig(Checked):
    ways: int = setting(5, Range(2, integer=True))  # at most a client shard's characters
    shots: int = setting(1, Range(1, 19, integer=True))  # 20 drawings per character
    num_clients: int = setting(10, COUNT)
    backbone: str = setting("conv4", OneOf(BACKBONES))
    # conv4: channels per block; resnet12: first stage (64 -> 64-160-320-640)
    width: int = setting(64, COUNT)
    image_size: int = setting(28, OneOf((28, 105)))  # omniglot28.npz or omniglot.npz
    # episodes per minibatch (the paper's meta-batch is 16)
    tasks_per_batch: int = setting(1, COUNT)
    reg: float = setting(0.2, POSITIVE)  # lambda of the head's L2 term (strong convexity of g)
    test_tasks: int = setting(600, COUNT)  # test episodes at the last round
    curve_tasks: int = setting(100, COUNT)  # test episodes at intermediate evaluation points
    eval_steps: int = setting(100, COUNT)
    seed: int = setting(0, SEED)  # the character shards and the test episodes
    reading: str = setting("episode", OneOf(READINGS))  # per-episode inner problems | global
    # what the head reads in g and f: unit-normalised features, as the evaluation's heads do,
    # or the raw ones (the runs before commit b9f32dc; an ablation). A loss setting (registry below)
    head_features: str = setting("unit", OneOf(HEAD_FEATURES))

    @property
    def net(self) -> NetSpec:
        if self.backbone == "conv4":
            return conv4(width=self.width, in_channels=1)
        scale = self.width / 64
        return resnet12(tuple(max(1, round(c * scale)) for c in (64, 160, 320, 640)), 1)


class FewShotProblem(BilevelProblem):
    """x = backbone parameters, y = {"head.weight": [C, d], "head.bias": [C]} with C = ways
    (``episode`` reading) or the 964 background characters (``global``)."""

    dtype = torch.float32
    physical_submodels = True
    reports_accuracy = True
    movable = True
    precisions = PRECISIONS
    head_on_features = True  # g = CE(head_y(phi_x(support))) + ridge (both readings)
    one_pass: bool | None = None  # episodes_in_one_pass: None = on CUDA only

    def __init__(self, config: FewShotConfig) -> None:
        self.config = config
        self.num_clients = config.num_clients
        self.per_task_inner = config.reading == "episode"
        data = load_omniglot(config.image_size)
        self._train = torch.from_numpy(data.split(background=True).images)
        self._test = torch.from_numpy(data.split(background=False).images)
        rng = torch.Generator().manual_seed(config.seed)
        if config.num_clients * config.ways > self._train.shape[0]:
            raise ValueError(
                f"{config.num_clients} clients x {config.ways} ways need more than the "
                f"{self._train.shape[0]} background characters; use fewer clients or ways"
            )
        self.shards = shard_classes(self._train.shape[0], config.num_clients, rng)
        if min(len(s) for s in self.shards) < config.ways:
            raise ValueError(f"a client shard has fewer than ways = {config.ways} characters")

    def place(self, compute: Compute) -> None:
        """The images on ``compute.device`` (the character shards, index sets that sampling
        reads, stay on the CPU; episodes are cut from the images where they lie)."""
        super().place(compute)
        self._train, self._test = self._train.to(compute.device), self._test.to(compute.device)
        self.__dict__.pop("_test_plan", None)  # episodes cut from the images before the move

    # -- parameters and structure ---------------------------------------------------------
    def init_params(self, rng: torch.Generator) -> tuple[Params, Params]:
        """Drawn from ``rng`` (a CPU generator: the same values on every device), then moved
        to the problem's device."""
        x = init(self.config.net, rng, self.dtype)
        classes = self.config.ways if self.per_task_inner else self._train.shape[0]
        y = init_head(self.config.net, classes, rng, self.dtype, "head")
        return on_device(x, self.compute.device), on_device(y, self.compute.device)

    def channel_layers(self, x: Params, y: Params) -> ChannelLayers:
        readers = (("y", "head.weight", 1),)
        return ChannelLayers(tuple(net_layers(self.config.net, "x", readers)))

    # -- data -----------------------------------------------------------------------------
    def _episodes(self, client: int, rng: torch.Generator) -> list[Episode]:
        c = self.config
        return [
            sample_episode(self._train, self.shards[client], c.ways, c.shots, 20 - c.shots, rng)
            for _ in range(c.tasks_per_batch)
        ]

    def episode_batch(self, episode: Episode, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels of ``part`` ("support" or "query") of ``episode``, as the
        losses take them: episode labels 0..N-1, or the global character indices in the
        ``global`` reading."""
        labels = getattr(episode, f"{part}_labels")
        return getattr(episode, part), labels if self.per_task_inner else episode.classes[labels]

    def _batch(self, episodes: list[Episode], part: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = zip(*(self.episode_batch(e, part) for e in episodes), strict=True)
        return torch.cat(images), torch.cat(labels)

    def sample_tasks(self, client, rng):
        """``tasks_per_batch`` fresh episodes, each (support batch, query batch)."""
        return [
            ((e.support, e.support_labels), (e.query, e.query_labels))
            for e in self._episodes(client, rng)
        ]

    def sample_lower_batch(self, client, rng):
        """Support images and labels of ``tasks_per_batch`` fresh episodes."""
        return self._batch(self._episodes(client, rng), "support")

    def sample_upper_batch(self, client, rng):
        """Query images and labels of ``tasks_per_batch`` fresh episodes (other episodes than
        the lower batch's: only the ``global`` reading samples them apart)."""
        return self._batch(self._episodes(client, rng), "query")

    def sample_task_batch(self, client, rng):
        """Whole episodes (support and query) for the single-level methods."""
        return self._episodes(client, rng)

    # -- losses ---------------------------------------------------------------------------
    def _phi(self, x: Params, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(phi_x(images), labels) of an (images, labels) batch: the features the head reads
        in g and f (``head_features``)."""
        phi, labels = self._raw_phi(x, batch)
        return self._head_input(phi), labels

    def _raw_phi(self, x: Params, batch) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        return forward(self.config.net, x, images, self.compute), labels

    def _head_input(self, phi: torch.Tensor) -> torch.Tensor:
        return F.normalize(phi, dim=-1) if self.config.head_features == "unit" else phi

    def _cross_entropy(self, y: Params, features: tuple[torch.Tensor, torch.Tensor]):
        phi, labels = features
        return F.cross_entropy(linear_head(y, phi, "head"), labels)

    def _ridge(self, y: Params, per_episode: bool = False) -> torch.Tensor:
        """reg/2 ||y||^2; ``per_episode``: of each of E heads (tensors with a leading E), [E]."""
        if per_episode:
            return 0.5 * self.config.reg * sum(t.pow(2).flatten(1).sum(1) for t in y.values())
        return 0.5 * self.config.reg * sum(t.pow(2).sum() for t in y.values())

    def lower_features(self, client, x, batch):
        """g reads x only through the support features phi_x(support) (``head_on_features``)."""
        return self._phi(x, batch)

    def lower_head_loss(self, client, y, features):
        """CE(head_y(phi), labels) + reg/2 ||y||^2 on ``features`` = (phi, labels)."""
        return self._cross_entropy(y, features) + self._ridge(y)

    def episode_head_losses(self, y: Params, features, upper: bool) -> torch.Tensor:
        """Per episode e: CE(head_{y_e}(phi_e), labels_e), plus reg/2 ||y_e||^2 for g: the
        losses of ``lower_head_loss`` / ``upper_loss`` for E episodes at once (bmm)."""
        (phi, labels), weight, bias = features, y["head.weight"], y["head.bias"]
        logits = torch.baddbmm(bias.unsqueeze(1), phi, weight.transpose(1, 2))
        losses = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")
        losses = losses.view(labels.shape).mean(1)
        if upper:
            return losses
        return losses + self._ridge(y, per_episode=True)

    @property
    def episodes_in_one_pass(self) -> bool:
        """Whether a client's episodes go through the backbone together, each normalised alone
        (``rabo_bench.federated.episodes``): on CUDA, where one large batch beats many small
        ones; ``one_pass`` (an attribute, for tests and benchmarks) overrides."""
        if self.one_pass is not None:
            return self.one_pass
        return self.per_task_inner and self.compute.device.type == "cuda"

    def episode_features(self, x: Params, batches: list) -> tuple[torch.Tensor, torch.Tensor]:
        """(phi [E, n, d], labels [E, n]) of E episodes' support (or query) ``batches`` of n
        images each, as the head reads them in g and f (``head_features``)."""
        phi, labels = self._episode_phi(x, batches)
        return self._head_input(phi), labels

    def _episode_phi(self, x: Params, batches: list) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone's features of E episodes' ``batches`` in one forward that normalises
        each episode alone (``groups``)."""
        images, labels = zip(*batches, strict=True)
        phi = forward(self.config.net, x, torch.cat(images), self.compute, groups=len(images))
        return phi.view(len(images), -1, phi.shape[-1]), torch.stack(labels)

    def lower_loss(self, client, x, y, batch):
        return self.lower_head_loss(client, y, self.lower_features(client, x, batch))

    def upper_loss(self, client, x, y, batch):
        return self._cross_entropy(y, self._phi(x, batch))

    def task_loss(self, client, x, y, batch):
        """The sub-model baselines' single-level loss (SPEC §6, §9 item 11): in the ``episode``
        reading the prototypical loss (module docstring), in the ``global`` reading joint
        training of backbone and head on support and query with global labels, on the raw
        features whatever ``head_features`` says (g and f alone read it: the registry's loss
        settings)."""
        if self.per_task_inner:
            return self.prototypical_loss(x, batch)
        support, query = self._batch(batch, "support"), self._batch(batch, "query")
        images = torch.cat([support[0], query[0]])
        features = self._raw_phi(x, (images, torch.cat([support[1], query[1]])))
        return self.lower_head_loss(client, y, features)

    def prototypical_loss(self, x: Params, episodes: list[Episode]) -> torch.Tensor:
        """The prototypical loss (the episode reading's task loss and Dist-ProtoNet's), mean
        over ``episodes``: query CE over minus squared distances to support class means. With
        ``episodes_in_one_pass`` the episodes' support sets go through the backbone in one
        forward and their query sets in another (each episode normalised alone), the same loss
        to rounding."""
        if self.episodes_in_one_pass and len(episodes) > 1:
            return self._prototypical_in_one_pass(x, episodes)
        return sum(self._prototypical(x, e) for e in episodes) / len(episodes)

    def _prototypical_in_one_pass(self, x: Params, episodes: list[Episode]) -> torch.Tensor:
        support, s_labels = self._episode_phi(x, [(e.support, e.support_labels) for e in episodes])
        query, q_labels = self._episode_phi(x, [(e.query, e.query_labels) for e in episodes])
        onehot = F.one_hot(s_labels, self.config.ways).to(support.dtype)  # [E, n_s, ways]
        prototypes = onehot.transpose(1, 2) @ support / onehot.sum(1).unsqueeze(-1)
        logits = -torch.cdist(query, prototypes).pow(2)  # [E, n_q, ways]
        return F.cross_entropy(logits.flatten(0, 1), q_labels.flatten())  # equal query sets

    def _prototypical(self, x: Params, episode: Episode) -> torch.Tensor:
        net, ways = self.config.net, self.config.ways
        support = forward(net, x, episode.support, self.compute)
        labels = episode.support_labels
        prototypes = torch.stack([support[labels == k].mean(0) for k in range(ways)])
        logits = -torch.cdist(forward(net, x, episode.query, self.compute), prototypes).pow(2)
        return F.cross_entropy(logits, episode.query_labels)

    # -- evaluation -----------------------------------------------------------------------
    @cached_property
    def _test_plan(self) -> list[Episode]:
        rng = torch.Generator().manual_seed(self.config.seed + 1)
        classes = torch.arange(self._test.shape[0], device="cpu")  # read by the CPU sampler
        c = self.config
        return [
            sample_episode(self._test, classes, c.ways, c.shots, 20 - c.shots, rng)
            for _ in range(c.test_tasks)
        ]

    def evaluate(self, x: Params, y: Params) -> dict:
        return self._accuracy(x, self._test_plan[: self.config.curve_tasks])

    def evaluate_final(self, x: Params, y: Params) -> dict:
        """All test episodes, with the curve episodes' accuracy in the details."""
        return with_curve_accuracy(self._accuracy(x, self._test_plan), self.evaluate(x, y))

    @torch.no_grad()
    def _accuracy(self, x: Params, episodes: list[Episode]) -> dict:
        correct = []
        for chunk in range(0, len(episodes), 50):
            part = episodes[chunk : chunk + 50]
            support = self._features(x, torch.stack([e.support for e in part]))
            query = self._features(x, torch.stack([e.query for e in part]))
            s_labels = torch.stack([e.support_labels for e in part])
            q_labels = torch.stack([e.query_labels for e in part])
            weight, bias = self._fit_heads(support, s_labels)
            logits = query @ weight.transpose(1, 2) + bias.unsqueeze(1)
            correct.append((logits.argmax(-1) == q_labels).float().mean(1))
        acc = torch.cat(correct).double()
        half_width = 1.96 * acc.std(unbiased=True) / math.sqrt(len(acc)) if len(acc) > 1 else 0
        return {
            "accuracy": float(acc.mean()),
            "accuracy_ci95": float(half_width),
            "details": json.dumps({"test_tasks": len(acc)}),
        }

    def _features(self, x: Params, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm features of a [tasks, n, 1, H, W] stack -> [tasks, n, d], each task's set
        normalised with its own statistics, as in training (an episode's support or query set
        alone). On CUDA the tasks go through one forward (``groups``); on the CPU one forward
        per task is faster (Conv4-16, 50 query sets of 75: 2.5 s against 6.7 s for groups of
        10, measured), with the same numbers."""
        tasks, n = images.shape[:2]
        per_forward = tasks if self.compute.device.type == "cuda" else 1
        flat = torch.cat(
            [
                forward(self.config.net, x, part.flatten(0, 1), self.compute, groups=len(part))
                for part in images.split(per_forward)
            ]
        )
        return F.normalize(flat, dim=-1).view(tasks, n, -1)

    def _fit_heads(self, features: torch.Tensor, labels: torch.Tensor):
        """Per task, reg-L2 multinomial logistic regression by gradient descent from zero with
        step 1 / (1/2 + reg) (the loss is (1/2 + reg)-smooth on unit-norm features)."""
        tasks, _, d = features.shape
        ways, reg = self.config.ways, self.config.reg
        weight = torch.zeros(tasks, ways, d, dtype=features.dtype, device=features.device)
        bias = torch.zeros(tasks, ways, dtype=features.dtype, device=features.device)
        onehot = F.one_hot(labels, ways).to(features.dtype)
        lr = 1.0 / (0.5 + reg)
        for _ in range(self.config.eval_steps):
            probs = torch.softmax(features @ weight.transpose(1, 2) + bias.unsqueeze(1), -1)
            err = (probs - onehot) / features.shape[1]
            weight = weight - lr * (err.transpose(1, 2) @ features + reg * weight)
            bias = bias - lr * err.sum(1)
        return weight, bias


register_problem(
    "omniglot",
    FewShotConfig,
    FewShotProblem,
    lambda config: (ARCHIVES[config.image_size],),
    # Dist-MAML's adaptation steps and step size, settings of the problem until issue 18 moved
    # them to the baseline (baselines/maml.py): kept in the run identity for the random streams
    retired={"maml_steps": 5, "maml_lr": 0.1},
    # before commit b9f32dc the head read the raw features
    loss_settings={"head_features": "raw"},
)
