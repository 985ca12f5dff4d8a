"""The checkerboard context model (edgecodec/models/checkerboard.py): what each half may depend on."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgecodec.models.checkerboard import (  # noqa: E402
    ANCHORS,
    NON_ANCHORS,
    CheckerboardContext,
    ContextConfig,
    ExactCost,
    GemmForward,
    anchor_mask,
    kernel_mask,
)

M, H, W = 6, 9, 10  # odd height: the lattices differ in size


def random_model(kernel: int = 3, inputs: str = "both", predict_mean: bool = True, depth: int = 1) -> CheckerboardContext:
    torch.manual_seed(kernel + depth)
    model = CheckerboardContext(ContextConfig(y_channels=M, hidden=5, kernel=kernel, inputs=inputs, predict_mean=predict_mean, depth=depth))
    with torch.no_grad():
        for p in model.parameters():  # the output layer starts at zero: give every layer weight
            p.normal_(0.0, 0.5)
    return model.eval()


def latents(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    y = rng.integers(-20, 21, (1, M, H, W))
    s = rng.integers(0, 64, (1, M, H, W))
    mq = rng.integers(-80, 81, (1, M, H, W))
    return tuple(torch.tensor(a, dtype=torch.float32) for a in (y, s, mq))


CONFIGS = [(3, "both", True, 1), (5, "res", True, 0), (3, "y", False, 2)]


@pytest.mark.parametrize("kernel,inputs,predict_mean,depth", CONFIGS)
def test_non_anchor_predictions_never_depend_on_non_anchor_latents(kernel, inputs, predict_mean, depth):
    model = random_model(kernel, inputs, predict_mean, depth)
    y, s, mq = latents(0)
    non = torch.from_numpy(~anchor_mask(H, W))
    y2 = y.clone()
    y2[..., non] += torch.randint(-50, 50, y2[..., non].shape).float()
    with torch.no_grad():
        a, b = model(y, s, mq), model(y2, s, mq)
    for u, v in zip(a, b):
        assert torch.equal(u, v)


@pytest.mark.parametrize("kernel,inputs,predict_mean,depth", CONFIGS)
def test_anchors_keep_the_hyperprior_parameters_whatever_the_latents(kernel, inputs, predict_mean, depth):
    model = random_model(kernel, inputs, predict_mean, depth)
    y, s, mq = latents(1)
    anc = torch.from_numpy(anchor_mask(H, W))
    for y_any in (y, y * 3 + 7, torch.zeros_like(y)):
        with torch.no_grad():
            s_hat, mq_hat = model(y_any, s, mq)
        assert torch.equal(s_hat[..., anc], s[..., anc])
        assert torch.equal(mq_hat[..., anc], mq[..., anc])


def test_a_non_anchor_prediction_does_depend_on_its_neighbouring_anchors():
    model = random_model()
    y, s, mq = latents(2)
    y2 = y.clone()
    y2[0, :, 4, 4] += 30  # (4, 4) is an anchor; (4, 5) and (3, 4) are non-anchors beside it
    with torch.no_grad():
        (a, _), (b, _) = model(y, s, mq), model(y2, s, mq)
    changed = (a != b).any(1)[0]
    assert changed[4, 5] and changed[3, 4]
    assert not changed[4, 7]  # outside the 3x3 window
    assert not changed[anchor_mask(H, W)].any()


def test_kernel_masks_keep_exactly_the_anchor_taps():
    assert kernel_mask(3).sum() == 4 and kernel_mask(5).sum() == 12
    r = np.arange(5) - 2
    assert np.array_equal(kernel_mask(5).numpy() > 0, (r[:, None] + r[None, :]) % 2 != 0)


def test_lattices_tile_the_latents():
    cover = np.zeros((H, W), int)
    for rs, cs in ANCHORS + NON_ANCHORS:
        cover[rs, cs] += 1
    assert (cover == 1).all()
    non = np.zeros((H, W), bool)
    for rs, cs in NON_ANCHORS:
        non[rs, cs] = True
    assert np.array_equal(non, ~anchor_mask(H, W))


@pytest.mark.parametrize("kernel,inputs,predict_mean,depth", CONFIGS)
def test_gemm_forward_computes_the_module_at_the_non_anchors(kernel, inputs, predict_mean, depth):
    model = random_model(kernel, inputs, predict_mean, depth)
    y, s, mq = latents(3)
    with torch.no_grad():
        s_hat, mq_hat = (t[0].numpy() for t in model(y, s, mq))
    got = GemmForward(model)(*(t[0].numpy().astype(np.int64) for t in (y, s, mq)))
    assert len(got) == 2
    for rs, cs, d in got:
        np.testing.assert_allclose(s[0, :, rs, cs].numpy() + d[:M], s_hat[:, rs, cs], atol=1e-4)
        if predict_mean:
            np.testing.assert_allclose(mq[0, :, rs, cs].numpy() + 4 * d[M:], mq_hat[:, rs, cs], atol=1e-4)


def test_exact_cost_is_the_coders_table_cost_and_the_relaxation_is_exact_at_integers(tiny_bundle):
    cost = ExactCost(tiny_bundle)
    tables = tiny_bundle.entropy_model.y_tables
    rng = np.random.default_rng(4)
    f = tiny_bundle.latent.mean_steps
    s = rng.integers(0, tiny_bundle.latent.scale_levels, 500)
    mq = rng.integers(-60, 61, 500)
    y = rng.integers(-15, 16, 500)
    m = np.floor_divide(mq, f)
    t = s * f + (mq - f * m)
    inside = (y - m >= tables.offset[t]) & (y - m < tables.offset[t] + tables.length[t])
    np.testing.assert_allclose(cost.np_bits(y, s, mq)[inside], tables.symbol_bits(y - m, t)[inside], rtol=1e-6)
    ty, ts, tq = (torch.tensor(a, dtype=torch.float32) for a in (y, s, mq))
    for mean in (True, False):
        np.testing.assert_allclose(cost.relaxed(ty, ts, tq, mean).numpy(), cost.np_bits(y, s, mq), rtol=1e-6)
