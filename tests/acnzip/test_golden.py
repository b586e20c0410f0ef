"""Golden archives: format drift cannot pass silently.

tests/acnzip/golden/ holds archives as hex text: format version 2 (written by acnzip before
--order keep moved to the associative protocol), version 3 (float keep and set, before
portable archives) and version 4 (portable keep and set, q(z|x) on the whole latent grid)
must still decode to the same images, and today's archives of the same images must have
exactly the pinned bytes (the version strings of the header aside, which change with every
library upgrade); so must the version-4 archives acnzip still writes when told to (no
posterior window). Made with the binarized model shipped from 2026-11-28 (GOLDEN_MODEL_SHA256,
found by hash whether it is still the default or retired), so a new default model changes
nothing here. Today's portable archives (keep, set) must have the pinned bytes on every
machine; the float ones (tour, set --float) are those of this machine's float32 kernels.
"""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from acnzip import api
from acnzip.archive import pack, read_archive
from acnzip.modelfile import shipped_model_for

from .test_safety import digits

GOLDEN = Path(__file__).parent / "golden"
pytestmark = pytest.mark.slow      # the shipped model on the CPU: ~1 minute in all
GOLDEN_MODEL_SHA256 = "d23b49500e18d2301057a1ae45ba6677f226c55d5f1c5036c89b8e5ac904a7f9"


def golden_model() -> Path:
    return shipped_model_for(GOLDEN_MODEL_SHA256)


def golden_images() -> np.ndarray:
    """Six generated digits and a duplicate of the first, (7, 28, 28) uint8 {0, 1}."""
    x = digits(6, seed=11)
    return np.concatenate([x, x[:1]])


def _unhex(name: str, tmp_path: Path) -> Path:
    path = tmp_path / name.replace(".hex", ".acn")
    path.write_bytes(bytes.fromhex((GOLDEN / name).read_text().replace("\n", "")))
    return path


def _multiset(x: np.ndarray) -> list:
    return sorted(bytes(img) for img in x.reshape(len(x), -1))


@pytest.mark.parametrize("version, order", [(2, "keep"), (2, "set"), (2, "tour"), (3, "keep"),
                                            (3, "set"), (4, "keep"), (4, "set")])
def test_older_format_versions_still_decode(tmp_path, version, order):
    archive = _unhex(f"v{version}-{order}.hex", tmp_path)
    assert read_archive(archive).version == version
    api.decompress(archive, tmp_path / "out", quiet=True)
    back, want = np.load(tmp_path / "out" / "d.npy"), golden_images()
    if order == "keep":
        assert np.array_equal(back, want)
    else:
        assert _multiset(back) == _multiset(want)


def pinned_bytes(archive: Path) -> bytes:
    """The archive's bytes with the header's version strings and the model's file name (the
    golden model's hash stays) set to fixed values."""
    a = read_archive(archive)
    assert a.header["model_sha256"] == GOLDEN_MODEL_SHA256
    a.header["model_name"] = "pinned"
    a.header["acnzip_version"] = "pinned"
    a.header["versions"] = {"torch": "pinned"}
    return pack(a)


PINNED_SHA256 = {   # golden_model(), golden_images(); format version 6 (model name pinned)
    "keep": "55e1d292c53466e65af2f4eefca36de31a446870712ce20185908dfbe2f847f2",
    "set": "e35728d16cd9edef2bc60448d19a15ee85b9e7d6be4a1413176a2e752b97689c",
    "tour": "2b1d9bb3e04f7b1930111aee6320e939190f9cae7089d628fdb784b1ddb97f82",
    "set-float": "983a26d1db429e80cec529bbf75bac869c82845352df4a949a82353b69cbb8a7",
}
PINNED_V4 = {       # the same images as version 4 (q on the whole grid): unchanged since 4
    "keep": "da1ebea142100b0abd35528a4ac2bd50bf9e3f7d77e6c6fe0147b9b6fd7a4af6",
    "set": "727524868066dd0752468a9191ffb5e015df936a97a740b7e525946b0db89ca4",
    "tour": "a74047ca974ac812790cd94b3ca171e7dc076db7018c5c9bf4fb72f68c82a8c4",
    "set-float": "a86123a21f88f56c30422b3ed184c904493e546c29b3fcbd6bf26b72b7187a95",
}


@pytest.mark.parametrize("order, window", [("keep", 8.0), ("set", 8.0), ("tour", 8.0),
                                           ("set-float", 8.0), ("keep", None), ("set", None),
                                           ("tour", None), ("set-float", None)])
def test_todays_archives_have_the_pinned_bytes(tmp_path, monkeypatch, order, window):
    monkeypatch.setattr(api, "POSTERIOR_WINDOW", window)
    pinned = PINNED_SHA256 if window else PINNED_V4
    np.save(tmp_path / "d.npy", golden_images())
    api.compress(tmp_path / "d.npy", tmp_path / "a.acn", model=golden_model(),
                 order=order.split("-")[0], portable=not order.endswith("float"), quiet=True)
    got = hashlib.sha256(pinned_bytes(tmp_path / "a.acn")).hexdigest()
    assert got == pinned[order], (
        f"--order {order} archives changed: a format change needs a new format version, "
        f"docs/format.md, a golden v{read_archive(tmp_path / 'a.acn').version} file kept for "
        "the decoder, and then a new pinned hash")


def test_the_tour_protocol_without_a_window_is_unchanged_since_version_2(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(api, "POSTERIOR_WINDOW", None)
    np.save(tmp_path / "d.npy", golden_images())
    api.compress(tmp_path / "d.npy", tmp_path / "a.acn", model=golden_model(), order="tour",
                 quiet=True)
    old = read_archive(_unhex("v2-tour.hex", tmp_path))
    assert old.header["model_sha256"] == GOLDEN_MODEL_SHA256
    assert read_archive(tmp_path / "a.acn").payload == old.payload
