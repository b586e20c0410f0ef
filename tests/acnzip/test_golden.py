"""Golden archives: format drift cannot pass silently.

tests/acnzip/golden/ holds archives as hex text: format version 2 (written by acnzip before
--order keep moved to the associative protocol) must still decode to the same images, and
today's archives of the same images must have exactly the pinned bytes (the version strings
of the header aside, which change with every library upgrade). Made with the shipped binarized
model, so the bytes are those of a real trained network on this machine's float32 kernels.
"""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from acnzip import api
from acnzip.archive import pack, read_archive

from .test_safety import digits

GOLDEN = Path(__file__).parent / "golden"
pytestmark = pytest.mark.slow      # the shipped model on the CPU: ~1 minute in all


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


@pytest.mark.parametrize("order", ["keep", "set", "tour"])
def test_format_version_2_archives_still_decode(tmp_path, order):
    archive = _unhex(f"v2-{order}.hex", tmp_path)
    assert read_archive(archive).version == 2
    api.decompress(archive, tmp_path / "out", quiet=True)
    back, want = np.load(tmp_path / "out" / "d.npy"), golden_images()
    if order == "keep":
        assert np.array_equal(back, want)
    else:
        assert _multiset(back) == _multiset(want)


def pinned_bytes(archive: Path) -> bytes:
    """The archive's bytes with the header's version strings set to fixed values."""
    a = read_archive(archive)
    a.header["acnzip_version"] = "pinned"
    a.header["versions"] = {"torch": "pinned"}
    return pack(a)


PINNED_SHA256 = {   # format version 3, shipped binarized model, golden_images()
    "keep": "878c6d6558a478b4fa8edc1c00d7d6e4c7314b17a700758b5d73d371aadd5d8a",
    "set": "0ec620b97ad16fe92aad26b7d8e3cc5fca0d38012017529d7264a89b71b1c920",
    "tour": "6208fc7afa0dfd4b28294a4d22a36fb13ce67e2181c0b2b802e3f8f65ffe4b7a",
}


@pytest.mark.parametrize("order", ["keep", "set", "tour"])
def test_todays_archives_have_the_pinned_bytes(tmp_path, order):
    np.save(tmp_path / "d.npy", golden_images())
    api.compress(tmp_path / "d.npy", tmp_path / "a.acn", order=order, quiet=True)
    got = hashlib.sha256(pinned_bytes(tmp_path / "a.acn")).hexdigest()
    assert got == PINNED_SHA256[order], (
        f"--order {order} archives changed: a format change needs a new format version, "
        f"docs/format.md, a golden v{read_archive(tmp_path / 'a.acn').version} file kept for "
        "the decoder, and then a new pinned hash")


def test_the_tour_protocol_is_unchanged_since_version_2(tmp_path):
    np.save(tmp_path / "d.npy", golden_images())
    api.compress(tmp_path / "d.npy", tmp_path / "a.acn", order="tour", quiet=True)
    old = read_archive(_unhex("v2-tour.hex", tmp_path))
    assert read_archive(tmp_path / "a.acn").payload == old.payload
