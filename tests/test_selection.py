"""Automatic backend choice, with fake runtimes and devices (this host has no iGPU or NPU)."""

import time

import numpy as np
import pytest
from tiny_model import synthetic_image

from edgecodec import codec
from edgecodec.errors import BackendUnavailableError
from edgecodec.runtimes import base, selection
from edgecodec.runtimes.numpy_backend import NumpyBackend


class Good(NumpyBackend):
    """Correct, with a configurable per-call delay per device."""

    delays = {"CPU": 0.06, "NPU": 0.0, "GPU": 0.12}  # apart by more than a loaded machine's jitter
    name = "good"
    calls = 0

    @classmethod
    def devices(cls):
        return ["CPU", "NPU", "GPU"]

    def _wait(self):
        type(self).calls += 1
        time.sleep(self.delays[self.device])

    def analysis(self, x, gain):
        self._wait()
        return super().analysis(x, gain)

    def synthesis(self, y_hat, inv_gain):
        self._wait()
        return super().synthesis(y_hat, inv_gain)


class Wrong(NumpyBackend):
    """Fastest of all, but its outputs are wrong: must never be chosen."""

    name = "wrong"

    def analysis(self, x, gain):
        y, z = super().analysis(x, gain)
        return y + 3.0, z

    def synthesis(self, y_hat, inv_gain):
        return np.zeros_like(super().synthesis(y_hat, inv_gain))


class Noisy(NumpyBackend):
    """Fast, and close on average (rms 0.1, what OpenVINO's int8 analysis gave on an AVX2-only CPU),
    but its latents round to other integers too often: a mean-error check would admit it."""

    name = "noisy"

    def analysis(self, x, gain):
        y, z = super().analysis(x, gain)
        return y + np.random.default_rng(0).normal(0, 0.1, y.shape).astype(np.float32), z


class Broken(NumpyBackend):
    name = "broken"

    def __init__(self, *a, **k):
        raise BackendUnavailableError("driver crashed")


class Missing(NumpyBackend):
    name = "missing"

    @classmethod
    def probe(cls):
        return "not installed (pip install 'edgecodec[missing]')"


@pytest.fixture()
def fakes(monkeypatch, tmp_path):
    monkeypatch.setattr(base, "REGISTRY", {"good": Good, "wrong": Wrong, "broken": Broken, "missing": Missing})
    monkeypatch.setenv("EDGECODEC_CACHE", str(tmp_path / "cache.json"))
    Good.calls = 0
    return tmp_path / "cache.json"


def test_candidates_list_every_device_and_why_not(fakes, tiny_bundle):
    c = {(x.name, x.device): x for x in selection.candidates(tiny_bundle)}
    assert {("good", "CPU"), ("good", "NPU"), ("good", "GPU"), ("wrong", "CPU"), ("broken", "CPU")} <= set(c)
    assert not c[("missing", "-")].available and "pip install" in c[("missing", "-")].reason


def test_the_fastest_correct_device_wins_and_wrong_or_broken_never_do(fakes, tiny_bundle):
    auto = selection.AutoBackend(tiny_bundle)
    enc = codec.encode(synthetic_image(40, 60), 2, auto)
    assert auto.select("analysis", (64, 64)).device == "NPU"
    assert auto.select("synthesis", (64, 64)).device == "NPU"
    status = {(r["backend"], r["device"]): r["status"] for r in auto.report}
    assert status[("wrong", "CPU")].startswith("mismatch")
    assert status[("broken", "CPU")] == "load error"
    assert status[("missing", "-")].startswith("unavailable")
    assert codec.decode(enc.data, auto).parse.digest() == enc.parse.digest()


def test_choice_is_per_role_and_size_class(fakes, tiny_bundle, monkeypatch):
    monkeypatch.setattr(Good, "delays", {"CPU": 0.0, "NPU": 0.15, "GPU": 0.3})
    auto = selection.AutoBackend(tiny_bundle)
    assert auto.select("synthesis", (64, 64)).device == "CPU"
    assert selection.size_class(768, 1000) == (1024, 768) and selection.size_class(65, 1) == (256, 256)


def test_portrait_and_landscape_share_one_measurement(fakes, tiny_bundle):
    auto = selection.AutoBackend(tiny_bundle)
    auto.select("analysis", (512, 768))
    Good.calls = 0
    auto.select("analysis", (768, 512))
    assert Good.calls == 0


def test_a_backend_whose_latents_round_differently_is_rejected_with_the_reason(fakes, tiny_bundle, monkeypatch):
    monkeypatch.setattr(base, "REGISTRY", {"noisy": Noisy, "good": Good})
    monkeypatch.setattr(Good, "delays", {"CPU": 0.1, "NPU": 0.1, "GPU": 0.1})
    auto = selection.AutoBackend(tiny_bundle)
    assert auto.select("analysis", (64, 64)).name == "good"
    status = {(r["backend"], r["device"]): r["status"] for r in auto.report}
    assert status[("noisy", "CPU")].startswith("mismatch") and "coded elements" in status[("noisy", "CPU")]
    assert auto.select("synthesis", (64, 64)).name == "noisy"  # its synthesis is exact: admitted for decoding
    survey = {r["backend"]: r for r in selection.AutoBackend(tiny_bundle).survey()}
    assert survey["noisy"]["analysis"].startswith("quality") and survey["noisy"]["synthesis"] == "ok"


def test_installing_a_runtime_measures_only_the_new_one(fakes, tiny_bundle, monkeypatch):
    monkeypatch.setattr(base, "REGISTRY", {"good": Good})
    monkeypatch.setattr(Good, "delays", {"CPU": 0.1, "NPU": 0.1, "GPU": 0.1})
    selection.AutoBackend(tiny_bundle).select("synthesis", (64, 64))
    monkeypatch.setattr(base, "REGISTRY", {"good": Good, "noisy": Noisy})
    Good.calls = 0
    lines = []
    auto = selection.AutoBackend(tiny_bundle, announce=lines.append)
    assert auto.select("synthesis", (64, 64)).name == "noisy"  # exact synthesis, no delay: the fastest
    assert Good.calls == 0  # good's cached measurement stood: nothing of it ran again
    assert len(lines) == 1 and "choosing a backend" in lines[0]  # said once, because noisy had to be measured


def test_measuring_is_announced_once_and_a_cached_choice_is_silent(fakes, tiny_bundle):
    lines = []
    auto = selection.AutoBackend(tiny_bundle, announce=lines.append)
    auto.select("analysis", (64, 64))
    auto.select("synthesis", (64, 64))
    auto.select("synthesis", (512, 512))
    assert len(lines) == 1
    again = []
    selection.AutoBackend(tiny_bundle, announce=again.append).select("synthesis", (512, 512))
    assert again == []


def test_cached_choice_starts_instantly_and_stale_entries_fall_back(fakes, tiny_bundle):
    selection.AutoBackend(tiny_bundle).select("synthesis", (64, 64))
    assert fakes.is_file()
    Good.calls = 0
    again = selection.AutoBackend(tiny_bundle)
    assert again.select("synthesis", (64, 64)).device == "NPU"
    assert Good.calls == 2  # only the quick reference check ran (its two qualities), no timing of all candidates
    # a cached result that is wrong for this process (the check now fails) is never used
    data = fakes.read_text().replace('"check": "mismatch', '"check": "ok", "was": "mismatch')
    fakes.write_text(data)
    third = selection.AutoBackend(tiny_bundle)
    assert third.select("synthesis", (64, 64)).name == "good"


def test_environment_variable_and_explicit_names_override_auto(fakes, tiny_bundle, monkeypatch):
    monkeypatch.setenv("EDGECODEC_BACKEND", "good:GPU")
    be = base.open_backend("auto", tiny_bundle)
    assert (be.name, be.device) == ("good", "GPU")
    assert base.open_backend("wrong", tiny_bundle).name == "wrong"  # an explicit choice is obeyed
    with pytest.raises(BackendUnavailableError, match="pip install"):
        base.open_backend("missing", tiny_bundle)


def test_no_usable_backend_is_a_clear_error(fakes, tiny_bundle, monkeypatch):
    monkeypatch.setattr(base, "REGISTRY", {"wrong": Wrong, "broken": Broken})
    with pytest.raises(BackendUnavailableError, match="no backend passed"):
        selection.AutoBackend(tiny_bundle).select("analysis", (64, 64))


def test_a_backend_whose_runtime_is_not_installed_names_its_extra(tiny_bundle):
    class NotHere(NumpyBackend):
        name, extra, runtime_module = "nothere", "nothere", "edgecodec_no_such_runtime"

    assert NotHere.probe() == "edgecodec_no_such_runtime is not installed (pip install 'edgecodec[nothere]')"
    with pytest.raises(BackendUnavailableError, match="pip install"):
        NotHere(tiny_bundle)


def test_the_backends_command_names_a_rejected_candidate_and_why(fakes, tiny_bundle, monkeypatch):
    CliRunner = pytest.importorskip("typer.testing").CliRunner

    from edgecodec import cli_app

    monkeypatch.setattr(base, "REGISTRY", {"noisy": Noisy, "good": Good, "missing": Missing})
    r = CliRunner().invoke(cli_app.app, ["backends", "--model", str(tiny_bundle.path)])
    assert r.exit_code == 0, r.output
    lines = {ln.split()[0] + ":" + ln.split()[1]: ln for ln in r.output.splitlines() if ln.strip()}
    assert "encode rejected: quality" in lines["noisy:CPU"] and "coded elements" in lines["noisy:CPU"]
    assert "decode ok" in lines["noisy:CPU"] and "encode ok" in lines["good:NPU"]
    assert "unavailable" in lines["missing:-"] and "pip install" in lines["missing:-"]
