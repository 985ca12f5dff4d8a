"""The fast synthesis (issue 13): its op family, MAC budget, receptive field and trainer checkpoints."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgecodec.models import fast_train  # noqa: E402
from edgecodec.models.fast_synthesis import (  # noqa: E402
    HALO_LATENTS,
    MAC_BUDGET,
    FastConfig,
    FastSynthesis,
    hook_macs_per_pixel,
    macs_per_pixel,
    receptive_field_latents,
    traced_ops,
)

CONFIGS = [FastConfig(), FastConfig(channels=(24, 16, 3), factors=(4, 2, 2), mix=(1, 0, 0)), FastConfig(channels=(72, 32, 16, 3))]


def test_default_config_fits_the_mac_budget_and_the_analytic_count_is_the_hooked_one():
    c = FastConfig()
    assert macs_per_pixel(c) == 4464.0 <= MAC_BUDGET
    for cfg in CONFIGS:
        assert hook_macs_per_pixel(FastSynthesis(cfg), 3, 5) == pytest.approx(macs_per_pixel(cfg), rel=1e-12)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_only_conv_relu_and_depth_to_space_with_a_halo_under_two_latents(cfg):
    model = FastSynthesis(cfg)
    assert traced_ops(model) <= {"Conv2d", "relu", "pixel_shuffle"}
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.kernel_size in ((3, 3), (1, 1)) and m.padding == (m.kernel_size[0] // 2,) * 2 for m in convs)
    assert all(m.stride == (1, 1) and m.groups == 1 and m.dilation == (1, 1) for m in convs)
    assert receptive_field_latents(cfg) <= HALO_LATENTS


def test_receptive_field_is_what_the_network_sees():
    """Perturbing one latent changes no output pixel further than the halo (in 16-px latent units)."""
    torch.manual_seed(0)
    model = FastSynthesis().eval()
    y = torch.randn(1, 192, 7, 7)
    y2 = y.clone()
    y2[0, :, 3, 3] += 5.0
    with torch.no_grad():
        d = (model(y2) - model(y)).abs().amax(dim=(0, 1))
    rows, cols = torch.nonzero(d > 0, as_tuple=True)
    reach = max(int(rows.max()) - 16 * 4 + 1, 16 * 3 - int(rows.min()), int(cols.max()) - 16 * 4 + 1, 16 * 3 - int(cols.min()))
    assert 0 < reach <= 16 * HALO_LATENTS


def test_output_is_16x_the_latent_grid():
    model = FastSynthesis(FastConfig(y_channels=8, channels=(8, 4, 3), factors=(4, 2, 2), mix=(0, 0, 0)))
    assert model(torch.zeros(2, 8, 3, 5)).shape == (2, 3, 48, 80)
    assert FastSynthesis()(torch.zeros(1, 192, 2, 3)).shape == (1, 3, 32, 48)


def test_bad_configs_are_refused():
    for kw in ({"factors": (2, 2, 2)}, {"factors": (2, 2, 2, 4)}, {"channels": (64, 32, 16, 4)}, {"mix": (0, 0, 0, 1)}):
        with pytest.raises(ValueError):
            FastConfig(**kw)
    assert FastConfig.from_dict(json.loads(json.dumps(CONFIGS[1].to_dict()))) == CONFIGS[1]


def _fake_pairs(d, m=8, n=(6, 2), levels=3, side=32):
    rng = np.random.default_rng(0)
    for split, k in zip(("train", "val"), n):
        np.save(d / f"{split}_latents.npy", rng.integers(-3, 4, (k, levels, m, side // 16, side // 16)).astype(np.int8))
        np.save(d / f"{split}_pixels.npy", rng.integers(0, 256, (k, side, side, 3)).astype(np.uint8))
        np.save(d / f"{split}_full.npy", rng.integers(0, 256, (k, levels, side, side, 3)).astype(np.uint8))
        np.save(d / f"{split}_done.npy", np.ones(k, bool))
    np.save(d / "inv_gain.npy", rng.uniform(0.5, 2.0, (levels, m)).astype(np.float32))


def test_checkpoint_resume_restores_the_optimizer_state_and_the_step_counter(tmp_path):
    _fake_pairs(tmp_path)
    out = tmp_path / "ck"
    args = [
        "--data",
        str(tmp_path),
        "--out",
        str(out),
        "--channels",
        "4,3",
        "--factors",
        "4,4",
        "--batch",
        "2",
        "--threads",
        "1",
        "--precondition",
    ]
    args += [
        "--minutes",
        "1e6",
        "--teacher-weight",
        "0.1",
    ]  # the warm-up's floor: a constant lr, so resumed and straight runs can match bit for bit
    state = fast_train.main(args + ["--max-steps", "2"])
    assert state["step"] == 2 and state["crops"] == 4
    saved = fast_train.load(out / fast_train.CKPT)
    assert saved["state"]["step"] == 2 and saved["optimizer"]["state"][0]["step"] == 2

    # resuming: the same optimizer moments and sampler state are loaded, then the counters continue
    model = FastSynthesis(FastConfig.from_dict(saved["config"]))
    opt = torch.optim.Adam(model.parameters())
    opt.load_state_dict(saved["optimizer"])
    for k, v in saved["optimizer"]["state"][0].items():
        assert torch.equal(opt.state_dict()["state"][0][k], v)
    state = fast_train.main(args + ["--max-steps", "3", "--resume"])
    after = fast_train.load(out / fast_train.CKPT)
    assert state["step"] == 3 and after["state"]["step"] == 3 and after["optimizer"]["state"][0]["step"] == 3
    assert after["state"]["elapsed"] >= saved["state"]["elapsed"]
    assert after["rng"] != saved["rng"]  # the sampler went on from where it stopped
    lines = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in lines if "event" in r and r["event"] in ("start", "resume")] == ["start", "resume"]
    assert len(next(r for r in lines if "val_psnr" in r)["val_psnr"]) == 3
    plain = fast_train.load_model(out / fast_train.CKPT)  # the input scaling folded into the first conv
    assert plain.config == FastConfig.from_dict(saved["config"]) and traced_ops(plain) <= {"Conv2d", "relu", "pixel_shuffle"}
    trained = FastSynthesis(plain.config)
    fast_train.precondition(trained, after["input_scale"])
    trained.load_state_dict(after["model"])
    y = torch.randn(1, 8, 2, 2)
    with torch.no_grad():
        assert torch.allclose(plain(y), trained(y), atol=1e-6)

    # exactly: 3 steps straight give the same weights as 2 steps, a checkpoint and 1 resumed step
    straight = tmp_path / "straight"
    args_s = [v if v != str(out) else str(straight) for v in args]
    fast_train.main(args_s + ["--max-steps", "3"])
    a, b = fast_train.load(straight / fast_train.CKPT), after
    assert a["rng"] == b["rng"]
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_partial_pairs_train_on_the_finished_crops_only(tmp_path):
    _fake_pairs(tmp_path)
    done = np.load(tmp_path / "train_done.npy")
    done[3:] = False
    np.save(tmp_path / "train_done.npy", done)
    with pytest.raises(SystemExit, match="only 3/6"):
        fast_train.Pairs(tmp_path, "train")
    pairs = fast_train.Pairs(tmp_path, "train", partial=True)
    assert pairs.n == 3 and set(pairs.sample(np.random.default_rng(0), 100)) <= {0, 1, 2}
    done[:] = True
    np.save(tmp_path / "train_done.npy", done)
    assert pairs.refresh() == 6


def test_qat_fine_tunes_a_float_checkpoint_through_the_int8_grids(tmp_path, monkeypatch):
    from edgecodec.models.fast_synthesis import calibrate, quantized_forward

    _fake_pairs(tmp_path)
    base = ["--data", str(tmp_path), "--channels", "4,3", "--factors", "4,4", "--batch", "2", "--threads", "1", "--minutes", "1e6"]
    fast_train.main(base + ["--out", str(tmp_path / "float"), "--max-steps", "2"])
    calib = [torch.randn(1, 8, 2, 2) for _ in range(3)]
    monkeypatch.setattr(fast_train, "qat_calibration", lambda out, inv_gain: calib)  # the bundle's would need 192 channels
    qat_from = tmp_path / "float" / fast_train.CKPT
    state = fast_train.main(base + ["--out", str(tmp_path / "qat"), "--qat-from", str(qat_from), "--max-steps", "2", "--lr", "1e-3"])
    assert state["qat"] and state["step"] == 2 and state["qat_from"] == str(qat_from)
    model = fast_train.load_model(tmp_path / "qat" / fast_train.CKPT)
    start = fast_train.load_model(qat_from)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), start.state_dict().values()))
    # the grids: no range -> the float network; calibrated ranges -> within a few pixel levels of it
    y = calib[0]
    with torch.no_grad():
        assert torch.equal(quantized_forward(model, y, None), model(y))
        q = quantized_forward(model, y, calibrate(model, calib))
        assert 0 < (q - model(y).clamp(0, 1)).abs().max() * 255 < 16
