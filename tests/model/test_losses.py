"""Graph-matching (Gromov-Wasserstein) and entity-type losses (cdlm/model/losses.py)."""

from __future__ import annotations

import torch

from cdlm.model.losses import (
    entity_type_loss,
    entity_type_targets,
    gromov_wasserstein_loss,
)


def test_gw_loss_has_real_gradients():
    torch.manual_seed(0)
    a = torch.randn(9, 16, requires_grad=True)
    b = torch.randn(13, 16, requires_grad=True)
    loss = gromov_wasserstein_loss(a, b, torch.full((9,), 1 / 9), torch.full((13,), 1 / 13))
    assert loss.item() > 1e-3
    loss.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert b.grad is not None and b.grad.abs().sum() > 0


def test_gw_loss_is_zero_for_identical_graphs():
    torch.manual_seed(1)
    a = torch.randn(7, 8)
    p = torch.softmax(torch.randn(7), 0)
    assert abs(gromov_wasserstein_loss(a, a.clone(), p, p).item()) < 1e-8
    # ... and for the same graph with its nodes permuted (GW ignores node identity).
    perm = torch.randperm(7)
    assert abs(gromov_wasserstein_loss(a, a[perm], p, p[perm]).item()) < 1e-6


def test_entity_type_targets_and_loss():
    # tags: 0=O, 1=B-a, 2=I-a, 3=B-b; types a=0, b=1
    tag_type = torch.tensor([-1, 0, 0, 1])
    tags = torch.tensor([[0, 1, 2, -100], [0, 0, -100, -100], [3, 0, 1, 0]])
    targets = entity_type_targets(tags, tag_type, 2)
    assert targets.tolist() == [[1, 0], [0, 0], [1, 1]]
    good = (targets * 20 - 10).requires_grad_(True)
    assert entity_type_loss(good, tags, tag_type).item() < 1e-3
    bad = -good.detach()
    assert entity_type_loss(bad, tags, tag_type).item() > 5
