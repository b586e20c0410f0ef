"""Every model acnzip has shipped stays shipped: an archive made with a shipped model names only
its hash, so a replaced default moves to acnzip/models/retired/ and archives made with it still
decode with no --model. The golden archives here were written by the acnzip of the day (the
commits that shipped each model, with that day's format) from images generated below."""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from acnzip import api
from acnzip.archive import read_archive
from acnzip.modelfile import MODELS, RETIRED, SHIPPED, shipped_model_for

from .test_golden import decode_or_refuse
from .test_safety import digits

GOLDEN = Path(__file__).parent / "golden"

# sha256 of every model file acnzip has shipped, current defaults included (git log -- acnzip/models).
# Shipping a new default adds its hash here; the one it replaces moves to models/retired/.
EVER_SHIPPED = {
    "d69c904178f01f8af1f9d6f9846769044bd6ff0c568f0187f7c88bc80be9cbb2": "binarized-mnist.pt, 2026-11-25",
    "d23b49500e18d2301057a1ae45ba6677f226c55d5f1c5036c89b8e5ac904a7f9": "binarized-mnist.pt, 2026-11-28",
    "b8dadcac00b7fc56eb3623ea18acf16d30e2ebbce21895314b0715f2030846a0": "mnist.pt leg 7, 2026-11-28",
    "b90e80d07551cfe9bc558863821cfb97e84c3551b0a88f13a54ae1ad134745ed": "mnist.pt leg 9, 2026-11-29",
    "3dea03247c49f2aeaf0be79b571293ce30c2acda4660bf0270893c82089737e4": "mnist.pt leg 13, 2026-11-29",
    "5529a8c1ac715812d84e13df849e1226aa7091e293c46c8586ba1c231da2719b": "mnist.pt leg 17, 2026-11-29",
    "f8e81260447c02303aa94359fef67275477abfbd3e8b447dc88e917c525804b6": "binarized-mnist.pt, 2026-11-29",
    "1fdf03abdc29506a83323450c5373ce4328006ce83c4fae261aec192d0676e67": "binarized-mnist.pt leg 2, 2026-11-29",
    "41f82cc9b5c4838a19953ebd6ae41414356aa19fc4c1507a283c255880593a1f": "mnist.pt leg 19, 2026-11-29",
    "44310dc31c28792d1d405cc718f65206609a797e1bc05244b0bd3538e5736da3": "binarized-mnist.pt leg 5, 2026-11-29",
    "7aa65fa19350faaae43dc6492789fe9360790d411cddfedfbab71aeb27e02a6a": "binarized-mnist.pt leg 6, 2026-11-29",
    "adc1bb812d377d606f5bd83d0f30f1bba0e2ec2c1be258a442c247cd09cbcd9c": "binarized-mnist.pt leg 10, prior tuned, 2026-11-29",
    "3c8a9b1c505198cdf3412d0538eb4768256842158c168b8c97f2dd2a43a367da": "mnist.pt leg 21, 2026-11-29",
    "ff6e7459a31f576dae1bf35a6b16475c1a10535011ca331967caba7e9d303482": "binarized-mnist.pt tour leg 2, 2026-11-29",
    "43fb31bda92717b77861779c188abd22d0215b4682517dd47de479cee24e91f9": "binarized-mnist.pt 8 blocks leg 2, 2026-11-30",
    "e9fc66bf9bfa49e8e7b526b271ce46f82110d399acdaffd80758b054c70a80fe": "binarized-mnist.pt 8 blocks leg 3, 2026-11-30",
    "ae4acfe59b94861498f0f3e45db2b4881ec5b871ea05202c5adf21e773b7513e": "binarized-mnist.pt 8 blocks leg 5, 2026-11-30",
    "bdcf99da2c3ec237b4b9cd7a6068f6e841a15cb087c63e9fffb7682ab68da532": "mnist.pt 8 blocks, 2026-11-30",
    "c4a23ab1ec55734d6fc59d2f2bc5961ae22e330ae538389f3e7ebb6c7c60b04e": "binarized-mnist.pt 8 blocks leg 8, 2026-11-30",
    "e6d4e9007eab090c0fff74d0fe248e07670322794ca750e1154c0fb13a018c2f": "mnist.pt 8 blocks grow8e, 2026-11-30",
    "0a8bf28815137d16ee23d104c888f423a7ffa79b0ac57c548e5b6f8e64281597": "binarized-mnist.pt 8 blocks leg 11, 2026-11-30",
    "e07ab47627e116e95c555eb65cec9301b94ea5bd5a58246e8ef0633354e57a9f": "mnist.pt 8 blocks grow8g, 2026-11-30",
    "fb111d1ba75ead9f782014910ccfff529b9f9d0b764d7c0a33d4d344edb44594": "mnist.pt 8 blocks shift4, 2026-12-01",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_model_ever_shipped_is_still_shipped_and_found_by_its_hash():
    for sha, what in EVER_SHIPPED.items():
        found = shipped_model_for(sha)
        assert found is not None, f"{what} (sha256 {sha[:16]}...) is no longer shipped"
        path = found.path
        assert hashlib.sha256(found.data).hexdigest() == sha
        assert path.parent == RETIRED or _sha256(path) == sha
        assert path.parent == MODELS or path.name.endswith(f"-{sha[:16]}.pt.packed")
    assert shipped_model_for("0" * 64) is None


def test_the_shipped_defaults_and_the_retired_files_are_all_recorded():
    """A new default must be recorded (and the one it replaced kept in retired/)."""
    for name in SHIPPED.values():
        assert _sha256(MODELS / name) in EVER_SHIPPED, f"{name} is not in EVER_SHIPPED"
    assert len(list(RETIRED.iterdir())) == len(EVER_SHIPPED) - len(SHIPPED)
    for path in RETIRED.iterdir():                 # packed (retired.py), named by their hash
        sha = path.name.removesuffix(".pt.packed").rsplit("-", 1)[1]
        found = shipped_model_for(next(s for s in EVER_SHIPPED if s.startswith(sha)))
        assert found.path == path, path.name


def _grey_digits(n: int, seed: int) -> np.ndarray:
    """8-bit digits with grey edges: the strokes of `digits`, averaged over 2x2 (0..255)."""
    g = digits(n, seed=seed).astype(np.float64)
    g = (g + np.roll(g, 1, 1) + np.roll(g, 1, 2) + np.roll(np.roll(g, 1, 1), 1, 2)) * (255 / 4)
    return np.rint(g).astype(np.uint8)


@pytest.mark.parametrize("name, version, stem, images", [
    ("retired-bin-d69c.hex", 1, "b", lambda: digits(5, seed=23)),
    ("retired-mnist-b8da.hex", 4, "g", lambda: _grey_digits(4, seed=29)),
    ("retired-mnist-b90e.hex", 5, "g", lambda: _grey_digits(4, seed=29))])
def test_archives_made_with_a_retired_default_decode_without_a_model(tmp_path, name, version,
                                                                    stem, images):
    archive = tmp_path / name.replace(".hex", ".acn")
    archive.write_bytes(bytes.fromhex((GOLDEN / name).read_text().replace("\n", "")))
    h = read_archive(archive).header
    assert read_archive(archive).version == version and not read_archive(archive).model
    assert shipped_model_for(h["model_sha256"]).path.parent == RETIRED
    if version == 1:             # float: decodes where the model computes the writer's bits
        if decode_or_refuse(archive, tmp_path / "out") is None:   # no --model
            return
    else:                        # portable: decodes everywhere
        api.decompress(archive, tmp_path / "out", quiet=True)      # no --model
    assert np.array_equal(np.load(tmp_path / "out" / f"{stem}.npy"), images())


def test_info_names_the_retired_file_that_decodes_an_archive(tmp_path):
    from click.testing import CliRunner
    from acnzip.cli import main
    archive = tmp_path / "b.acn"
    archive.write_bytes(bytes.fromhex((GOLDEN / "retired-bin-d69c.hex").read_text().replace("\n", "")))
    res = CliRunner().invoke(main, ["info", str(archive)])
    assert res.exit_code == 0, res.output
    assert ("model (name not recorded) (the retired shipped model "       # format 1: no name
            "binarized-mnist-d69c904178f01f8a.pt, found by its hash)") in res.output


def test_compressing_with_a_retired_model_records_it_as_shipped(tmp_path):
    """No 'keep that file' note: the archive decodes with acnzip alone."""
    retired = shipped_model_for("b90e80d07551cfe9bc558863821cfb97e84c3551b0a88f13a54ae1ad134745ed").path
    np.save(tmp_path / "g.npy", _grey_digits(2, seed=31))
    r = api.compress(tmp_path / "g.npy", tmp_path / "g.acn", model=retired, quiet=True)
    assert r["model_from"] == "shipped" and r["model_name"] == "mnist-b90e80d07551cfe9.pt"
    api.decompress(tmp_path / "g.acn", tmp_path / "out", quiet=True)          # no --model
    assert np.array_equal(np.load(tmp_path / "out" / "g.npy"), _grey_digits(2, seed=31))
