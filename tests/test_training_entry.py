"""The GPU training entry: packed crops, checkpoints with optimizer state, the time-following schedule.

Tiny synthetic images and a tiny model config: these check the plumbing, not what training learns.
"""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
PIL = pytest.importorskip("PIL.Image")

from edgecodec.errors import InputError  # noqa: E402
from edgecodec.models import crops  # noqa: E402
from edgecodec.models.hyperprior import HyperpriorCodec, ModelConfig, rd_loss  # noqa: E402
from edgecodec.models.train import (  # noqa: E402
    OPT_FILE,
    learning_rate,
    load_checkpoint,
    load_optimizer,
    lr_cosine,
    main,
    sample_crops,
    save_checkpoint,
    ship_weights,
)

TINY = ModelConfig(n_analysis=(8, 8, 8), m_latent=8, hyper=(8, 8), hyper_s2=8, z_channels=8, synthesis=(8, 8, 8))


def photos(folder, n=5, side=32):
    """Smooth gradients with a little noise (JPEG keeps them well), each a different picture."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    out = []
    for i in range(n):
        a = np.stack([(xx * (3 + i)) % 256, (yy * (5 + i)) % 256, ((xx + yy) * (2 + i)) % 256], -1).astype(np.float64)
        a = np.clip(a + rng.normal(0, 2, a.shape), 0, 255).astype(np.uint8)
        PIL.fromarray(a).save(folder / f"p{i}.png")
        out.append(a)
    return out


def as_set(arrays):
    return sorted(a.tobytes() for a in arrays)


@pytest.mark.parametrize("name,codec", [("c.npy", "raw"), ("c.npz", "raw")])
def test_raw_crops_round_trip_exactly(tmp_path, name, codec):
    src = photos(tmp_path / "src")
    r = crops.pack(tmp_path / "src", tmp_path / name, crop=32, codec=codec, max_bytes=10**6, rounds=1)
    got = crops.load(tmp_path / name)
    assert r["crops"] == len(src) == got.shape[0] and got.shape[1:] == (32, 32, 3) and got.dtype == np.uint8
    assert as_set(got) == as_set(src)  # photos as large as the crop: every crop is a whole photo


def test_jpeg_crops_decode_to_the_photos_within_jpeg_error(tmp_path):
    src = photos(tmp_path / "src")
    crops.pack(tmp_path / "src", tmp_path / "c.npz", crop=32, codec="jpeg", quality=95, max_bytes=10**6, rounds=1)
    got = crops.load(tmp_path / "c.npz")
    assert got.shape == (len(src), 32, 32, 3) and got.dtype == np.uint8
    for g in got:
        err = min(np.abs(g.astype(int) - s.astype(int)).mean() for s in src)
        assert err < 3.0


def test_the_packer_stops_at_its_byte_limit_and_cuts_more_rounds_when_there_is_room(tmp_path):
    photos(tmp_path / "src", n=3, side=48)
    one = 16 * 16 * 3
    few = crops.pack(tmp_path / "src", tmp_path / "few.npy", crop=16, codec="raw", max_bytes=4096 + 2 * (one + 8), rounds=3)
    many = crops.pack(tmp_path / "src", tmp_path / "many.npy", crop=16, codec="raw", max_bytes=10**6, rounds=3)
    assert few["crops"] == 2 and many["crops"] == 9 and many["photos"] == 3
    assert (tmp_path / "few.npy").stat().st_size <= few["max_bytes"]


def test_bad_packer_input_is_one_error_and_no_file(tmp_path):
    photos(tmp_path / "src", n=1)
    with pytest.raises(InputError, match="npz or .npy"):
        crops.pack(tmp_path / "src", tmp_path / "c.png", max_bytes=10**6)
    with pytest.raises(InputError, match="raw crops only"):
        crops.pack(tmp_path / "src", tmp_path / "c.npy", codec="jpeg", max_bytes=10**6)
    with pytest.raises(InputError, match="not one"):
        crops.pack(tmp_path / "src", tmp_path / "c.npz", crop=32, codec="raw", max_bytes=100)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a packed crops file"):
        crops.load(tmp_path / "junk.npz")
    assert not (tmp_path / "c.npz").exists() and not (tmp_path / "c.png").exists()
    assert crops.main(["pack", str(tmp_path / "src"), str(tmp_path / "c.png"), "--max-bytes", "1000000"]) == 2


def test_batches_are_cut_from_the_packed_crops_with_flips_in_channels_last():
    data = torch.randint(0, 256, (1, 8, 8, 3), dtype=torch.uint8)
    x = sample_crops(data, 64, 8)
    assert x.shape == (64, 3, 8, 8) and x.is_contiguous(memory_format=torch.channels_last)
    ref = data[0].permute(2, 0, 1).float() / 255
    flips = [ref, ref.flip(1), ref.flip(2), ref.flip(1).flip(2)]
    seen = {next(i for i, f in enumerate(flips) if torch.equal(xi, f)) for xi in x}  # each one is a flip of the crop
    assert seen == {0, 1, 2, 3}
    assert sample_crops(torch.zeros(3, 10, 12, 3, dtype=torch.uint8), 5, 6).shape == (5, 3, 6, 6)


def one_step(model, opt, seed):
    torch.manual_seed(seed)
    x = torch.rand(2, 3, 64, 64)
    q = torch.tensor([0, 7])
    r = rd_loss(model(x, q), x, torch.tensor(model.config.lambdas)[q])
    opt.zero_grad()
    r["loss"].backward()
    opt.step()


def test_a_checkpoint_restores_the_optimizer_state_exactly(tmp_path):
    torch.manual_seed(0)
    model = HyperpriorCodec(TINY)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    one_step(model, opt, 1)
    save_checkpoint(model, opt, {"step": 1, "elapsed": 1.0}, tmp_path / "ck")
    model2, state = load_checkpoint(tmp_path / "ck")
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    assert load_optimizer(tmp_path / "ck", opt2, model2, state["step"]).startswith("optimizer state restored")
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"] and s1["state"].keys() == s2["state"].keys()
    for k in s1["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(s1["state"][k][name], s2["state"][k][name])
    one_step(model, opt, 2)  # and the next step is the same step
    one_step(model2, opt2, 2)
    for p, p2 in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, p2)


def test_optimizer_state_of_other_weights_is_not_restored_and_shipped_weights_have_none(tmp_path):
    model = HyperpriorCodec(TINY)
    opt = torch.optim.Adam(model.parameters())
    one_step(model, opt, 0)
    save_checkpoint(model, opt, {"step": 5, "elapsed": 1.0}, tmp_path / "ck")
    assert (tmp_path / "ck" / OPT_FILE).is_file()
    fresh = torch.optim.Adam(model.parameters())
    assert load_optimizer(tmp_path / "ck", fresh, model, step=6).startswith("fresh Adam") and not fresh.state
    ship_weights(tmp_path / "ck", tmp_path / "ship")
    assert not (tmp_path / "ship" / OPT_FILE).exists()
    assert load_optimizer(tmp_path / "ship", fresh, model, step=5).startswith("fresh Adam (no optimizer state")


def test_the_schedule_follows_elapsed_time_and_ends_at_its_final_value():
    peak, final, budget = 1e-4, 1e-6, 720.0
    lr = [learning_rate(t, budget, "cosine", peak, final) for t in np.linspace(0, budget, 721)]
    assert lr[0] == final and max(lr) == peak and lr[-1] == final
    assert learning_rate(budget * 1.5, budget, "cosine", peak, final) == final
    decay = lr[int(0.5 * 720) :]
    assert all(b <= a for a, b in zip(decay, decay[1:], strict=False))
    # the same elapsed time gives the same rate whatever the budget's unit split (resumed runs)
    assert learning_rate(360.0, budget, "cosine", peak, final) == lr_cosine(0.5, peak, final)
    assert learning_rate(700.0, budget, "step", 2e-4, 0.0) == pytest.approx(2e-4 * 0.05)


def test_the_entry_starts_from_weights_resumes_with_its_optimizer_and_counts_on(tmp_path):
    """Two steps from --init, then --resume to three: the counters continue and opt.pt follows."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "crops.npy", rng.integers(0, 256, (4, 72, 72, 3), dtype=np.uint8))
    save_checkpoint(HyperpriorCodec(TINY), None, {"step": 100, "elapsed": 50.0, "qat_step": 7}, tmp_path / "init")
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "crops.npy"), "--init", str(tmp_path / "init"), "--out", str(out)]
    args += ["--device", "cpu", "--batch", "2", "--crop", "64", "--log-every", "1", "--schedule", "cosine"]
    main([*args, "--steps", "2"])
    s = json.loads((out / "ckpt" / "state.json").read_text())
    assert (s["step"], s["run_step"], s["qat_step"], s["init"]["step"], s["init"]["qat_step"]) == (102, 2, 0, 100, 7)
    assert torch.load(out / "ckpt" / OPT_FILE)["step"] == 102
    main([*args, "--steps", "3", "--resume"])
    s = json.loads((out / "ckpt" / "state.json").read_text())
    assert (s["step"], s["run_step"]) == (103, 3) and torch.load(out / "ckpt" / OPT_FILE)["step"] == 103
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [101, 102, 103]
    # each step's rate is the schedule at the run's position before it: 0, 1 of 2 steps, then 2 of 3
    assert [r["lr"] for r in log] == pytest.approx([lr_cosine(f, 2e-4, 1e-6) for f in (0, 1 / 2, 2 / 3)])


def test_the_qat_tail_tunes_only_the_synthesis_through_the_int8_grids(tmp_path):
    """--qat-tail 0.5 of 4 steps: 2 float steps, then 2 QAT steps of the synthesis and inverse gains."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "crops.npy", rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8))
    torch.manual_seed(0)
    save_checkpoint(HyperpriorCodec(TINY), None, {"step": 10, "elapsed": 5.0}, tmp_path / "init")
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "crops.npy"), "--init", str(tmp_path / "init"), "--out", str(out), "--device", "cpu"]
    main([*args, "--batch", "2", "--crop", "64", "--log-every", "1", "--steps", "4", "--qat-tail", "0.5"])
    s = json.loads((out / "ckpt" / "state.json").read_text())
    assert (s["step"], s["qat_step"], s["run_step"], s["phase"]) == (12, 2, 4, "qat")
    after_float = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [("psnr_int8" in r, "bpp" in r) for r in after_float if "run_step" in r] == [(False, True)] * 2 + [(True, False)] * 2
    assert torch.load(out / "ckpt" / OPT_FILE)["names"] == [n for n, _ in HyperpriorCodec(TINY).g_s.named_parameters(prefix="g_s")] + [
        "log_inv_gain"
    ]


def test_held_out_crops_are_evaluated_at_the_start_and_the_end(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "crops.npy", rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8))
    save_checkpoint(HyperpriorCodec(TINY), None, {"step": 0, "elapsed": 0.0}, tmp_path / "init")
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "crops.npy"), "--init", str(tmp_path / "init"), "--out", str(out), "--device", "cpu"]
    main([*args, "--batch", "2", "--crop", "64", "--steps", "1", "--val-crops", "1"])
    val = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"val"' in line]
    assert [v["step"] for v in val] == [0, 1]
    assert all(len(v["val"]["bpp"]) == len(v["val"]["psnr"]) == TINY.levels and v["val"]["loss"] > 0 for v in val)
    with pytest.raises(SystemExit, match="between 1 and 2"):
        main([*args, "--steps", "1", "--crop", "64", "--val-crops", "3"])


def test_compile_auto_falls_back_to_eager_when_the_compiler_fails(tmp_path, monkeypatch):
    def broken(fn):
        def run(*args):
            raise RuntimeError("no compiler here")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    np.save(tmp_path / "crops.npy", np.zeros((2, 64, 64, 3), np.uint8))
    save_checkpoint(HyperpriorCodec(TINY), None, {"step": 0, "elapsed": 0.0}, tmp_path / "init")
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "crops.npy"), "--init", str(tmp_path / "init"), "--out", str(out), "--device", "cpu"]
    main([*args, "--batch", "1", "--crop", "64", "--steps", "5", "--compile", "auto", "--probe-steps", "1", "--log-every", "1"])
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    probe = next(r["compile_probe"] for r in log if "compile_probe" in r)
    assert probe["kept"] is False and "no compiler here" in probe["error"]
    assert json.loads((out / "ckpt" / "state.json").read_text())["step"] == 5  # the probe's 2 eager steps, then 3 more
