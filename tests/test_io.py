"""Image and file I/O: bad images are InputErrors under opencv 4.x and 5.x alike, outputs follow the umask.

opencv answers bad input differently by version (measured: 4.8.1 raises ``cv2.error`` for an empty
buffer and decodes a cut JPEG to a full-size, partly gray image; 4.12 and 5.1 return None for a cut
JPEG; every version raises for an unknown extension in ``imencode``; older 4.x returned None/False
where 5.x raises). The installed opencv is tested as is, and both behaviours through a stand-in.
"""

import os
import stat

import cv2
import numpy as np
import pytest

from edgecodec import io
from edgecodec.errors import InputError


def _photo(h=48, w=64):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _encoded(suffix, *params):
    ok, buf = cv2.imencode(suffix, _photo(), list(params))
    assert ok
    return buf.tobytes()


PNG = _encoded(".png")
JPEG = _encoded(".jpg")


def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        io.read_image(tmp_path / "e.png")


@pytest.mark.parametrize("kind", ["png", "jpg"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -2])
def test_truncated_png_and_jpeg(tmp_path, kind, keep):
    data = PNG if kind == "png" else JPEG
    cut = data[:keep] if keep < 0 else data[: int(len(data) * keep)]
    (tmp_path / f"t.{kind}").write_bytes(cut)
    with pytest.raises(InputError, match="truncated"):
        io.read_image(tmp_path / f"t.{kind}")


@pytest.mark.parametrize(
    "data",
    [
        PNG,
        JPEG,
        _encoded(".jpg", cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        _encoded(".jpg", cv2.IMWRITE_JPEG_RST_INTERVAL, 1),
        JPEG + b"\xff\xda\x00\x10trailer, e.g. a motion photo's video" + bytes(range(256)),
        PNG + b"trailing bytes",
    ],
    ids=["png", "jpg", "progressive", "restart-markers", "jpg+trailer", "png+trailer"],
)
def test_complete_files_read(tmp_path, data):
    (tmp_path / "ok.img").write_bytes(data)
    img = io.read_image(tmp_path / "ok.img")
    assert img.shape == (48, 64, 3)


def test_garbage_is_not_readable(tmp_path, capfd):
    (tmp_path / "g.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x00IEND\xaeB`\x82")
    (tmp_path / "h.png").write_bytes(b"hello")
    for name in ("g.png", "h.png"):
        with pytest.raises(InputError, match="not a readable image"):
            io.read_image(tmp_path / name)
    assert capfd.readouterr().err == ""  # libpng and opencv's logger print nothing around it


class FakeCv2:
    """opencv's codec calls answering bad input as 4.x does (None / False) or as 5.x does (cv2.error)."""

    IMREAD_UNCHANGED = -1

    class error(Exception):  # noqa: N801 - the name cv2 uses
        pass

    def __init__(self, raises, decoded=None, printed=b"", writer_check=True):
        self.raises, self.decoded, self.printed, self.calls = raises, decoded, printed, []
        if not writer_check:  # an opencv without haveImageWriter: io probes with imencode
            self.haveImageWriter = None

    def _fail(self, what, value):
        if self.printed:
            os.write(2, self.printed)
        if self.raises:
            raise self.error(f"OpenCV(5.0.0) /io/opencv/modules/imgcodecs/src/loadsave.cpp:1: error: (-2:Unspecified error) {what}\n")
        return value

    def imdecode(self, buf, flags):
        self.calls.append("imdecode")
        if self.decoded is not None:
            if self.printed:
                os.write(2, self.printed)
            return self.decoded
        return self._fail("cannot decode", None)

    def imencode(self, ext, img):
        self.calls.append("imencode")
        return self._fail("could not find encoder for the specified extension", (False, None))

    def haveImageWriter(self, name):  # noqa: N802 - opencv's name
        self.calls.append("haveImageWriter")
        return self._fail("not implemented", False)


@pytest.fixture(params=[False, True], ids=["opencv4-returns-none", "opencv5-raises"])
def fake_cv2(request, monkeypatch):
    def install(**kw):
        fake = FakeCv2(request.param, **kw)
        monkeypatch.setattr(io, "_cv2", lambda: fake)
        return fake

    return install


def test_unreadable_image_either_opencv(tmp_path, fake_cv2, capfd):
    fake_cv2(printed=b"libpng error: IDAT: CRC error\n")
    (tmp_path / "x.png").write_bytes(PNG)
    with pytest.raises(InputError, match="not a readable image") as e:
        io.read_image(tmp_path / "x.png")
    assert "\n" not in str(e.value) and "(" in str(e.value)  # one line, with the library's reason
    assert capfd.readouterr().err == ""


def test_truncated_jpeg_partial_decode_either_opencv(tmp_path, fake_cv2):
    fake = fake_cv2(decoded=_photo())  # opencv 4.x decodes a cut JPEG to a partly gray image
    (tmp_path / "t.jpg").write_bytes(JPEG[: len(JPEG) // 2])
    with pytest.raises(InputError, match="truncated JPEG"):
        io.read_image(tmp_path / "t.jpg")
    assert fake.calls == []


def test_warnings_of_a_good_decode_are_passed_on(tmp_path, fake_cv2, capfd):
    fake_cv2(decoded=_photo(), printed=b"Corrupt JPEG data: 3 extraneous bytes before marker 0xd9\n")
    (tmp_path / "w.jpg").write_bytes(JPEG)
    assert io.read_image(tmp_path / "w.jpg").shape == (48, 64, 3)
    assert "Corrupt JPEG data" in capfd.readouterr().err


@pytest.mark.parametrize("writer_check", [True, False], ids=["haveImageWriter", "imencode-probe"])
def test_unknown_output_suffix_either_opencv(fake_cv2, writer_check):
    fake_cv2(writer_check=writer_check)
    with pytest.raises(InputError, match="cannot write images as '.xyz'"):
        io.output_suffix("out.xyz")


def test_encode_failure_either_opencv(fake_cv2):
    fake_cv2()
    with pytest.raises(InputError, match="cannot write this image as '.gif'"):
        io.encode_image(_photo(), ".gif")


def test_output_suffix_installed_opencv():
    assert io.output_suffix("a.PNG") == ".png"
    assert io.output_suffix("noext") == ".png"
    assert io.output_suffix("a.tif") == ".tif"
    for bad in ("a.xyz", "a.edgc"):
        with pytest.raises(InputError, match="cannot write images"):
            io.output_suffix(bad)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_atomic_write_follows_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        io.atomic_write(tmp_path / "out.bin", b"data")
        io.atomic_write(tmp_path / "out.bin", b"again", force=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o666 & ~umask
    assert (tmp_path / "out.bin").read_bytes() == b"again"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]  # no temporary file left


def test_atomic_write_failure_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        io.atomic_write(tmp_path / "out.bin", object())
    assert list(tmp_path.iterdir()) == []


def test_reading_in_threads(tmp_path):
    """Worker threads read without touching fd 2 (only the main thread redirects it)."""
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "ok.png").write_bytes(PNG)
    (tmp_path / "bad.png").write_bytes(b"hello")
    before = os.fstat(2)

    def read(name):
        try:
            return io.read_image(tmp_path / name).shape
        except InputError as e:
            return "error" if "not a readable image" in str(e) else str(e)

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(read, ["ok.png", "bad.png"] * 8))
    assert got == [(48, 64, 3), "error"] * 8
    after = os.fstat(2)
    assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)
