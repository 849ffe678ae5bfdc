"""The Omniglot hyper-representation problem (SPEC §7.1) on a tiny Conv-4 (width 4).

Needs the real data: skipped when RABO_BENCH_DATA is unset, a failure under CI=true (the same
rule as tests/unit/test_data.py).

Tolerances (float32, eps = 2^-23 ~ 1.2e-7, unit roundoff u ~ 6e-8):
  * physical vs zero-embedded sub-model: both paths run the same operations on the kept
    channels; they differ only in reductions that also sum the embedded path's exact zeros (conv
    over 4 instead of 2 input channels x 9 taps, the head's dot over 4 instead of 2 features,
    the ridge term's sum of squares over 964 x 4 instead of 964 x 2 entries). A sum of n terms
    carries a relative error of at most ~n u, i.e. <= 964 * 4 * 6e-8 ~ 2.3e-4 in the worst
    case, but the reordering only touches a few additions and is ~1 ulp in practice (measured:
    at most 1 ulp of g ~ 23). rtol 1e-5 on the losses leaves ~80 ulps of headroom; the
    gradients go through a backward pass with the same reductions plus the norm's division by
    sqrt(var + eps), so they get rtol 1e-4 (and an absolute floor of 1e-6 for entries that are
    ~0 in both).
  * ProtoNet against the hand computation: torch.cdist computes squared distances as
    |q|^2 + |p|^2 - 2 q.p for 95 queries (the matrix-multiply path), our reference as
    sum (q - p)^2; with unit-scale features of dimension 4 the cancellation error is
    ~ a few u |q|^2 ~ 1e-6 per logit, so rtol/atol 1e-5 on a loss ~ 1.6.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from rabo_bench.baselines.maml import FirstOrderMAML
from rabo_bench.baselines.protonet import PrototypicalLoss
from rabo_bench.data.episodes import sample_episode
from rabo_bench.federated.policies import ChannelImportance
from rabo_bench.models.networks import forward
from rabo_bench.problems import QuadraticBilevel
from rabo_bench.problems.fewshot import FewShotConfig, FewShotProblem
from tests.submodels import physical_and_embedded

CONFIG = FewShotConfig(width=4, test_tasks=6, curve_tasks=3, eval_steps=5)  # episode reading
GLOBAL = replace(CONFIG, reading="global")  # the ablation: one head over 964 characters
LOSS_TOL = {"rtol": 1e-5, "atol": 1e-6}
GRAD_TOL = {"rtol": 1e-4, "atol": 1e-6}


@pytest.fixture(scope="module")
def problem(root) -> FewShotProblem:
    return FewShotProblem(CONFIG)


@pytest.fixture(scope="module")
def global_problem(root) -> FewShotProblem:
    return FewShotProblem(GLOBAL)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_params(problem: FewShotProblem, seed: int = 0):
    """init_params with random norm scales and shifts, so every parameter carries information
    (a pruned channel must then really be removed, not just happen to be zero)."""
    g = gen(seed)
    x, y = problem.init_params(g)
    for name, t in x.items():
        if name.endswith(".norm.weight"):
            x[name] = 1 + 0.3 * torch.randn(t.shape, generator=g)
        elif name.endswith(".norm.bias"):
            x[name] = 0.3 * torch.randn(t.shape, generator=g)
    y["head.bias"] = 0.1 * torch.randn(y["head.bias"].shape, generator=g)
    return x, y


def grads(loss: torch.Tensor, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    values = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {
        n: torch.zeros_like(p) if g is None else g
        for (n, p), g in zip(params.items(), values, strict=True)
    }


def leaves(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone().requires_grad_(True) for n, t in params.items()}


# -- structure ----------------------------------------------------------------------------
@pytest.mark.parametrize(("reading", "classes"), [("episode", 5), ("global", 964)])
def test_channel_layers_couple_the_features_to_the_head_columns(reading, classes, root):
    problem = FewShotProblem(replace(CONFIG, reading=reading))
    x, y = problem.init_params(gen(0))
    layers = problem.channel_layers(x, y).layers
    assert [layer.size for layer in layers] == [4, 4, 4, 4]
    last = layers[-1]
    assert ("y", "head.weight", 1) in last.members
    assert all(side == "x" for layer in layers[:-1] for side, _, _ in layer.members)
    assert y["head.weight"].shape == (classes, 4) and y["head.bias"].shape == (classes,)
    # every backbone parameter's output dim is claimed; the head's class rows are not
    claimed = {(side, name, dim) for layer in layers for side, name, dim in layer.members}
    assert {("x", name, 0) for name in x} <= claimed
    assert ("y", "head.weight", 0) not in claimed and ("y", "head.bias", 0) not in claimed


@pytest.mark.parametrize(("backbone", "seed"), [("conv4", 0), ("conv4", 1), ("resnet12", 0)])
def test_physical_and_embedded_submodels_give_the_same_losses_and_gradients(
    problem, backbone, seed
):
    """On Conv-4 (width 4: 2 of 4 channels kept per layer) and on ResNet-12 (width 4, i.e.
    stages 4-10-20-40, where the shortcut and c3 share the block's output layer)."""
    if backbone != CONFIG.backbone:
        problem = FewShotProblem(replace(CONFIG, backbone=backbone))
    x, y = random_params(problem, seed)
    layers = problem.channel_layers(x, y)
    masks = ChannelImportance().assign(x, y, [0.5], 0, gen(seed), layers)[0]
    for layer in layers.layers:  # ceil(C / 2) channels of every layer, on every member
        keep = (layer.size + 1) // 2
        for side, name, dim in layer.members:
            assert (masks.x if side == "x" else masks.y).index[name][dim].numel() == keep
    assert masks.y.index["head.weight"][1].numel() == (layers.layers[-1].size + 1) // 2
    physical, embedded, x_sub, y_sub = physical_and_embedded(problem, 0, x, y, masks)
    assert x_sub.numel() < sum(t.numel() for t in x.values())  # really a narrow model
    assert y_sub.numel() < sum(t.numel() for t in y.values())
    for level, sample in (("f", physical.sample_f), ("g", physical.sample_g)):
        batch = sample(gen(10 + seed))
        narrow = getattr(physical, level)(x_sub, y_sub, batch)
        masked = getattr(embedded, level)(x_sub, y_sub, batch)
        torch.testing.assert_close(narrow, masked, **LOSS_TOL, msg=f"{level} values")
        g_narrow = torch.autograd.grad(narrow, (x_sub, y_sub))
        g_masked = torch.autograd.grad(masked, (x_sub, y_sub))
        for a, b, what in zip(g_narrow, g_masked, ("x", "y"), strict=True):
            assert b.abs().max() > 0
            # BatchNorm's backward subtracts batch means of g and g * x_hat: float32
            # cancellation leaves ~ eps * depth * max|grad| absolute error, hence the scaled atol.
            atol = 2e-5 * float(b.abs().max())
            torch.testing.assert_close(
                a, b, rtol=GRAD_TOL["rtol"], atol=atol, msg=f"d{level}/d{what}_sub"
            )


# -- data ---------------------------------------------------------------------------------
def test_client_shards_are_disjoint_and_cover_the_background_characters(problem):
    shards = [set(s.tolist()) for s in problem.shards]
    assert len(shards) == CONFIG.num_clients
    assert sum(len(s) for s in shards) == 964
    assert set().union(*shards) == set(range(964))


def is_drawing_of(problem: FewShotProblem, image: torch.Tensor, character: int) -> bool:
    return bool((problem._train[character] == image[0]).all(dim=(1, 2)).any())


@pytest.mark.parametrize("client", [0, 7])
def test_lower_batch_is_support_and_upper_batch_is_query_of_the_clients_characters(
    global_problem, client
):
    problem = global_problem
    ways, shots = CONFIG.ways, CONFIG.shots
    shard = set(problem.shards[client].tolist())
    lower_images, lower_labels = problem.sample_lower_batch(client, gen(3))
    upper_images, upper_labels = problem.sample_upper_batch(client, gen(3))
    assert lower_images.shape == (ways * shots, 1, 28, 28)
    assert upper_images.shape == (ways * (20 - shots), 1, 28, 28)
    for images, labels in ((lower_images, lower_labels), (upper_images, upper_labels)):
        assert set(labels.tolist()) <= shard and len(set(labels.tolist())) == ways
        assert all(is_drawing_of(problem, im, int(c)) for im, c in zip(images, labels, strict=True))
    # the same stream draws the same episode: lower = its support, upper = its query
    episode = sample_episode(
        problem._train, problem.shards[client], ways, shots, 20 - shots, gen(3)
    )
    assert torch.equal(lower_images, episode.support)
    assert torch.equal(lower_labels, episode.classes[episode.support_labels])
    assert torch.equal(upper_images, episode.query)
    assert torch.equal(upper_labels, episode.classes[episode.query_labels])


def test_episode_reading_tasks_are_support_and_query_of_one_episode_with_episode_labels(problem):
    tasks = problem.sample_tasks(4, gen(3))
    assert len(tasks) == CONFIG.tasks_per_batch
    (support, support_labels), (query, query_labels) = tasks[0]
    episode = sample_episode(
        problem._train, problem.shards[4], CONFIG.ways, CONFIG.shots, 20 - CONFIG.shots, gen(3)
    )
    assert torch.equal(support, episode.support) and torch.equal(query, episode.query)
    assert torch.equal(support_labels, episode.support_labels)  # 0..N-1, not characters
    assert torch.equal(query_labels, episode.query_labels)
    assert problem.per_task_inner


# -- evaluation ---------------------------------------------------------------------------
def test_evaluate_uses_curve_tasks_and_evaluate_final_uses_test_tasks(problem):
    x, y = random_params(problem)
    curve, final = problem.evaluate(x, y), problem.evaluate_final(x, y)
    for result, tasks in ((curve, CONFIG.curve_tasks), (final, CONFIG.test_tasks)):
        assert 0.0 <= result["accuracy"] <= 1.0
        assert result["accuracy_ci95"] >= 0.0
        assert json.loads(result["details"])["test_tasks"] == tasks
    # the last point also says what the curve's episodes give there (plateau, like with like)
    assert json.loads(final["details"])["curve_accuracy"] == curve["accuracy"]
    # the test episodes are fixed and a fresh head is fitted per episode: y plays no part
    y_other = {n: torch.zeros_like(t) for n, t in y.items()}
    assert problem.evaluate_final(x, y_other) == final
    assert len(problem._test_plan) == CONFIG.test_tasks
    assert all(int(e.classes.max()) < 659 for e in problem._test_plan)  # evaluation characters


def test_each_test_episode_is_normalised_alone(problem, monkeypatch):
    """Evaluation normalises each episode's support and query set with its own statistics, as
    training does: an episode's features do not depend on the other episodes evaluated with
    it (before, 50 episodes shared their statistics: 1.3-1.8 points below per-episode
    evaluation on a trained Conv4-16)."""
    x, _ = random_params(problem)
    episodes = problem._test_plan
    stack = torch.stack([e.query for e in episodes])
    together = problem._features(x, stack)
    for i, episode in enumerate(episodes):
        alone = problem._features(x, episode.query[None])
        torch.testing.assert_close(together[i : i + 1], alone, rtol=0, atol=0)
    # CUDA's path, one grouped forward for all episodes (only the device's type is read)
    monkeypatch.setattr(problem, "compute", replace(problem.compute, device="cuda"))
    torch.testing.assert_close(problem._features(x, stack), together, rtol=0, atol=0)


# -- single-level losses ------------------------------------------------------------------
def test_protonet_loss_equals_a_hand_computation(problem):
    x, _ = random_params(problem)
    episodes = problem.sample_task_batch(2, gen(5))
    assert len(episodes) == CONFIG.tasks_per_batch == 1
    e = episodes[0]
    support = forward(CONFIG.net, x, e.support)
    query = forward(CONFIG.net, x, e.query)
    prototypes = torch.stack([support[e.support_labels == k].mean(0) for k in range(CONFIG.ways)])
    logits = -((query[:, None, :] - prototypes[None, :, :]) ** 2).sum(-1)
    expected = F.cross_entropy(logits, e.query_labels)
    got = problem.prototypical_loss(x, episodes)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_task_loss_is_the_support_plus_query_loss_with_global_labels(global_problem):
    problem = global_problem
    x, y = random_params(problem)
    episodes = problem.sample_task_batch(1, gen(6))
    e = episodes[0]
    images = torch.cat([e.support, e.query])
    labels = e.classes[torch.cat([e.support_labels, e.query_labels])]
    phi = forward(CONFIG.net, x, images)  # the raw features, whatever head_features says
    expected = problem.lower_head_loss(1, y, (phi, labels))
    torch.testing.assert_close(problem.task_loss(1, x, y, episodes), expected)


def test_task_loss_in_the_episode_reading_is_the_prototypical_loss(problem):
    x, y = random_params(problem)
    episodes = problem.sample_task_batch(1, gen(6))
    expected = problem.prototypical_loss(x, episodes)
    assert torch.equal(problem.task_loss(1, x, y, episodes), expected)


def test_maml_with_no_adaptation_is_the_query_loss_and_its_gradient(problem):
    zero, maml_loss = FewShotProblem(GLOBAL), FirstOrderMAML(steps=0)
    x0, y0 = random_params(zero)
    episodes = zero.sample_task_batch(0, gen(7))
    e = episodes[0]
    query = (e.query, e.classes[e.query_labels])

    x, y = leaves(x0), leaves(y0)
    maml = maml_loss(zero, 0, x, y, episodes)
    grad_maml = grads(maml, {**x, **y})
    x, y = leaves(x0), leaves(y0)
    plain = zero.upper_loss(0, x, y, query)
    grad_plain = grads(plain, {**x, **y})
    torch.testing.assert_close(maml, plain, rtol=1e-6, atol=0)
    for name, g in grad_plain.items():
        assert g.abs().max() > 0, name
        torch.testing.assert_close(grad_maml[name], g, rtol=1e-6, atol=1e-8, msg=name)


def test_maml_with_one_step_is_the_first_order_query_gradient_at_the_adapted_point(problem):
    one, maml_loss = FewShotProblem(GLOBAL), FirstOrderMAML(steps=1, lr=0.1)
    x0, y0 = random_params(one, 1)
    episodes = one.sample_task_batch(3, gen(8))
    e = episodes[0]
    support = (e.support, e.classes[e.support_labels])
    query = (e.query, e.classes[e.query_labels])

    x, y = leaves(x0), leaves(y0)
    maml = maml_loss(one, 3, x, y, episodes)
    grad_maml = grads(maml, {**x, **y})
    # by hand: one SGD step on the support loss, then the query loss and its gradient there
    x, y = leaves(x0), leaves(y0)
    step = grads(one.lower_loss(3, x, y, support), {**x, **y})
    adapted = {n: (t - 0.1 * step[n]).detach().requires_grad_(True) for n, t in {**x, **y}.items()}
    ax = {n: adapted[n] for n in x0}
    ay = {n: adapted[n] for n in y0}
    expected = one.upper_loss(3, ax, ay, query)
    grad_expected = grads(expected, adapted)
    torch.testing.assert_close(maml, expected, rtol=1e-5, atol=1e-6)
    for name, g in grad_expected.items():
        torch.testing.assert_close(grad_maml[name], g, **GRAD_TOL, msg=name)


def test_the_episode_losses_need_a_problem_with_episodes(problem):
    for loss in (FirstOrderMAML(), PrototypicalLoss()):
        assert loss.supports(problem) and loss.supports(FewShotProblem)
        assert not loss.supports(QuadraticBilevel)


# -- configuration ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backbone": "vgg"}, r"backbone = 'vgg' must be one of \['conv4', 'resnet12'\]"),
        ({"shots": 20}, r"shots = 20 must be an integer in \[1, 19\]"),
        ({"shots": 0}, r"shots = 0 must be an integer in \[1, 19\]"),
        ({"ways": 1}, "ways = 1 must be an integer >= 2"),
        ({"image_size": 32}, r"image_size = 32 must be one of \[28, 105\]"),
        ({"width": 0}, "width = 0 must be an integer >= 1"),
        ({"reading": "shared"}, r"reading = 'shared' must be one of \['episode', 'global'\]"),
    ],
)
def test_bad_configs_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        FewShotConfig(**change)
