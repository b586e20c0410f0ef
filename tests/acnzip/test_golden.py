"""Golden archives: format drift cannot pass silently.

tests/acnzip/golden/ holds archives as hex text: format version 2 (written by acnzip before
--order keep moved to the associative protocol), version 3 (float keep and set, before
portable archives) and version 4 (portable keep and set, q(z|x) on the whole latent grid)
must still decode to the same images, and today's archives of the same images must have
exactly the pinned bytes (the version strings of the header aside, which change with every
library upgrade); so must the version-4 archives acnzip still writes when told to (no
posterior window). Made with the shipped binarized model. Today's portable archives (keep,
set) must have the pinned bytes on every machine; the float ones (tour, set --float) are
those of this machine's float32 kernels.
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
    """The archive's bytes with the header's version strings set to fixed values."""
    a = read_archive(archive)
    a.header["acnzip_version"] = "pinned"
    a.header["versions"] = {"torch": "pinned"}
    return pack(a)


PINNED_SHA256 = {   # shipped binarized model, golden_images(); format version 6
    "keep": "a59ea14966d36c553d912e33bfb537291ca296a2eb61b67649549e2f4774192f",
    "set": "6094db348f41e9af108cfde20367d35c8e1b7946e59707e08062002def0f2b83",
    "tour": "4a384ede35f8236f3fcc44025a41b01987f291868fbe6a4acbd5082de6e51890",
    "set-float": "83ed1463b43d29be9d510f6ad61286314fccc8debdad3d5bed79e5720444ab7e",
}
PINNED_V4 = {       # the same images as version 4 (q on the whole grid): unchanged since 4
    "keep": "ce2edc0c5e309023e7812575b83e0709af52c7ccdc8fd8c75532596df0e2491f",
    "set": "dc0ccf8d0699a64458c03542fb3d39d58cbf40aeb7d597bf5156a7c304bf74ad",
    "tour": "f30766813cc209a999be1d1488c2af9cadbfcab9402fa042b34de694b23e238a",
    "set-float": "25c77010ee89d7aca4d98cb9501a0052098f6c7385e325e5cd46f0fa01bbf35d",
}


@pytest.mark.parametrize("order, window", [("keep", 8.0), ("set", 8.0), ("tour", 8.0),
                                           ("set-float", 8.0), ("keep", None), ("set", None),
                                           ("tour", None), ("set-float", None)])
def test_todays_archives_have_the_pinned_bytes(tmp_path, monkeypatch, order, window):
    monkeypatch.setattr(api, "POSTERIOR_WINDOW", window)
    pinned = PINNED_SHA256 if window else PINNED_V4
    np.save(tmp_path / "d.npy", golden_images())
    api.compress(tmp_path / "d.npy", tmp_path / "a.acn", order=order.split("-")[0],
                 portable=not order.endswith("float"), quiet=True)
    got = hashlib.sha256(pinned_bytes(tmp_path / "a.acn")).hexdigest()
    assert got == pinned[order], (
        f"--order {order} archives changed: a format change needs a new format version, "
        f"docs/format.md, a golden v{read_archive(tmp_path / 'a.acn').version} file kept for "
        "the decoder, and then a new pinned hash")


def test_the_tour_protocol_without_a_window_is_unchanged_since_version_2(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(api, "POSTERIOR_WINDOW", None)
    np.save(tmp_path / "d.npy", golden_images())
    api.compress(tmp_path / "d.npy", tmp_path / "a.acn", order="tour", quiet=True)
    old = read_archive(_unhex("v2-tour.hex", tmp_path))
    assert read_archive(tmp_path / "a.acn").payload == old.payload
