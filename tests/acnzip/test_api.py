"""compress/decompress end to end on real digits: pixel-exact, deterministic, and refusing bad
input with a clear error while leaving nothing behind."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from acnzip import api
from acnzip.archive import ArchiveError
from acnzip.atomic import OutputExistsError
from acnzip.data import DataError
from acnzip.modelfile import ModelFileError

from .conftest import make_model_file


def decompress_in_new_process(archive, outdir, model, *extra):
    """Bob runs in a separate process from Alice."""
    code = ("import sys; from acnzip import api; "
            f"api.decompress({str(archive)!r}, {str(outdir)!r}, model={str(model)!r}, "
            f"quiet=True{''.join(', ' + e for e in extra)})")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_array_roundtrip_is_pixel_exact_in_a_separate_process(tmp_path, binary_model,
                                                               mnist_subset, suffix):
    src = tmp_path / f"digits{suffix}"
    if suffix == ".npy":
        np.save(src, mnist_subset * 255)                       # {0, 255} is binary too
    else:
        np.savez(src, x=mnist_subset)
    report = api.compress(src, tmp_path / "a.acn", model=binary_model, quiet=True)
    assert report["n_images"] == 40 and report["payload_over_bound_pct"] < 2.0
    done = decompress_in_new_process(tmp_path / "a.acn", tmp_path / "out", binary_model)
    assert done.returncode == 0, done.stderr
    if suffix == ".npy":
        back = np.load(tmp_path / "out" / src.name)
        assert back.dtype == np.uint8 and np.array_equal(back, mnist_subset * 255)
    else:
        assert np.array_equal(np.load(tmp_path / "out" / src.name)["x"], mnist_subset)


def test_png_folder_roundtrip_keeps_names_and_modes(tmp_path, binary_model, mnist_subset):
    src = tmp_path / "pngs"
    for i, img in enumerate(mnist_subset[:12]):
        sub = src / ("odd" if i % 2 else "even")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img * 255).save(sub / f"digit{i}.png")
    api.compress(src, tmp_path / "p.acn", model=binary_model, quiet=True)
    done = decompress_in_new_process(tmp_path / "p.acn", tmp_path / "out", binary_model)
    assert done.returncode == 0, done.stderr
    for path in src.rglob("*.png"):
        back = Image.open(tmp_path / "out" / path.relative_to(src))
        orig = Image.open(path)
        assert back.mode == orig.mode and np.array_equal(np.asarray(back), np.asarray(orig))


def test_order_set_restores_the_set_and_saves_the_permutation(tmp_path, binary_model,
                                                              mnist_subset):
    np.save(tmp_path / "d.npy", mnist_subset)
    keep = api.compress(tmp_path / "d.npy", tmp_path / "k.acn", model=binary_model, quiet=True)
    as_set = api.compress(tmp_path / "d.npy", tmp_path / "s.acn", model=binary_model,
                          order="set", quiet=True)
    # the set's choices return log2 40! = 159.16 bits; keep codes no order at all
    assert as_set["choice_back_nats_per_image"] * 40 / np.log(2) == pytest.approx(159.159, abs=1e-3)
    assert keep["choice_back_nats_per_image"] == 0
    for r in (keep, as_set):      # each payload = its own bound + initial bits
        bound_bits = r["bound_nats_per_image"] * r["n_images"] / np.log(2)
        assert abs(8 * r["payload_bytes"] - bound_bits - r["initial_bits_total"]) <= 64 + 1e-3 * bound_bits
    api.decompress(tmp_path / "s.acn", tmp_path / "out", model=binary_model, quiet=True)
    back = np.load(tmp_path / "out" / "d.npy")
    key = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))
    assert key(back) == key(mnist_subset)


def test_compressing_twice_gives_identical_bytes(tmp_path, binary_model, mnist_subset):
    np.save(tmp_path / "d.npy", mnist_subset)
    api.compress(tmp_path / "d.npy", tmp_path / "1.acn", model=binary_model, quiet=True)
    api.compress(tmp_path / "d.npy", tmp_path / "2.acn", model=binary_model, quiet=True)
    assert (tmp_path / "1.acn").read_bytes() == (tmp_path / "2.acn").read_bytes()


def test_other_thread_count_decodes_exactly_or_refuses(tmp_path, binary_model, mnist_subset):
    np.save(tmp_path / "d.npy", mnist_subset)
    api.compress(tmp_path / "d.npy", tmp_path / "a.acn", model=binary_model, quiet=True)
    done = decompress_in_new_process(tmp_path / "a.acn", tmp_path / "out", binary_model,
                                     "threads=2")
    if done.returncode == 0:
        assert np.array_equal(np.load(tmp_path / "out" / "d.npy"), mnist_subset)
    else:
        assert "fingerprint mismatch" in done.stderr and not (tmp_path / "out").exists()


@pytest.fixture
def archive(tmp_path, binary_model, mnist_subset):
    np.save(tmp_path / "d.npy", mnist_subset[:10])
    api.compress(tmp_path / "d.npy", tmp_path / "a.acn", model=binary_model, quiet=True)
    return tmp_path / "a.acn"


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[: len(d) // 2], "truncated"),
    (lambda d: d[:-9] + bytes([d[-9] ^ 0x10]) + d[-8:], "corrupt"),
    (lambda d: d[:100] + bytes([d[100] ^ 0xFF]) + d[101:], "corrupt"),
])
def test_damaged_archive_is_refused_and_nothing_written(tmp_path, archive, binary_model,
                                                        damage, message):
    archive.write_bytes(damage(archive.read_bytes()))
    with pytest.raises(ArchiveError, match=message):
        api.decompress(archive, tmp_path / "out", model=binary_model, quiet=True)
    assert not (tmp_path / "out").exists()


def test_wrong_model_is_refused(tmp_path, archive):
    other = make_model_file(tmp_path / "other.pt", seed=1)
    with pytest.raises(api.CompressError, match="wrong model"):
        api.decompress(archive, tmp_path / "out", model=other, quiet=True)
    assert not (tmp_path / "out").exists()


def test_model_for_other_images_is_refused(tmp_path, mnist_subset):
    rgb = make_model_file(tmp_path / "rgb.pt", channels=3, size=28, binary=False)
    np.save(tmp_path / "d.npy", mnist_subset)
    with pytest.raises(ModelFileError, match="8-bit 28x28x3 images, the data are binary"):
        api.compress(tmp_path / "d.npy", tmp_path / "a.acn", model=rgb, quiet=True)
    assert not (tmp_path / "a.acn").exists()


def test_mixed_sizes_are_refused_and_unreadable_files_kept(tmp_path, binary_model):
    src = tmp_path / "pngs"
    src.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(src / "a.png")
    Image.fromarray(np.zeros((20, 28), np.uint8)).save(src / "b.png")
    with pytest.raises(DataError, match="all images must have one size"):
        api.compress(src, tmp_path / "a.acn", model=binary_model, quiet=True)
    assert not (tmp_path / "a.acn").exists()
    (src / "b.png").write_bytes(b"not a png")              # kept byte for byte, not lost
    r = api.compress(src, tmp_path / "a.acn", model=binary_model, quiet=True)
    assert r["n_images"] == 1 and r["n_other_files"] == 1
    api.decompress(tmp_path / "a.acn", tmp_path / "out", model=binary_model, quiet=True)
    assert (tmp_path / "out" / "b.png").read_bytes() == b"not a png"


def test_existing_output_is_not_overwritten_without_force(tmp_path, archive, binary_model):
    before = archive.read_bytes()
    with pytest.raises(OutputExistsError, match="-f"):
        api.compress(tmp_path / "d.npy", archive, model=binary_model, quiet=True)
    assert archive.read_bytes() == before
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not empty"):
        api.decompress(archive, tmp_path / "out", model=binary_model, quiet=True)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]


@pytest.fixture(scope="module")
def grey_model(tmp_path_factory, datasets):
    """A tiny 256-way model trained briefly on real 8-bit MNIST (a real, if weak, model)."""
    from acnzip.data import load_array
    from acnzip.train import RunOptions, train
    with np.load(datasets / "mnist" / "mnist.npz") as z:
        x = z["x_train"][:512]
    work = tmp_path_factory.mktemp("grey")
    np.save(work / "train.npy", x)
    out = work / "grey.pt"
    train(load_array(work / "train.npy"), out, config="tiny", device="cpu",
          opts=RunOptions(max_steps=20, progress=False, log=lambda m: None))
    return out


def test_grey_mnist_png_roundtrip_with_a_trained_8bit_model(tmp_path, grey_model,
                                                            datasets):
    with np.load(datasets / "mnist" / "mnist.npz") as z:
        grey = z["x_test"][:10]
    src = tmp_path / "grey"
    src.mkdir()
    for i, img in enumerate(grey):
        Image.fromarray(img, mode="L").save(src / f"{i}.png")
    r = api.compress(src, tmp_path / "g.acn", model=grey_model, quiet=True)
    assert r["recon_nats_per_image"] / (784 * np.log(2)) < 7.9 and r["payload_over_bound_pct"] < 2.0
    done = decompress_in_new_process(tmp_path / "g.acn", tmp_path / "out", grey_model)
    assert done.returncode == 0, done.stderr
    for i, img in enumerate(grey):
        back = Image.open(tmp_path / "out" / f"{i}.png")
        assert back.mode == "L" and np.array_equal(np.asarray(back), img)


def _repack(path, **changes):
    """Rewrite an archive with some sections changed (and valid checksums): a crafted file."""
    import dataclasses
    from acnzip.archive import read_archive, write_archive
    a = dataclasses.replace(read_archive(path), **changes)
    path.unlink()
    write_archive(path, a)


def test_crafted_names_cannot_escape_the_output_folder(tmp_path, binary_model, mnist_subset):
    from acnzip.archive import pack_names
    src = tmp_path / "pngs"
    src.mkdir()
    for i, img in enumerate(mnist_subset[:3]):
        Image.fromarray(img * 255).save(src / f"{i}.png")
    arc = tmp_path / "p.acn"
    api.compress(src, arc, model=binary_model, quiet=True)
    _repack(arc, names=pack_names(["0.png", "../escaped.png", "2.png"]))
    with pytest.raises(ArchiveError, match="names section is damaged|unsafe"):
        api.decompress(arc, tmp_path / "out", model=binary_model, quiet=True)
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "out").exists()


def test_crafted_source_file_and_header_are_refused(tmp_path, archive, binary_model):
    import dataclasses
    from acnzip.archive import read_archive, write_archive
    original = read_archive(archive)
    h = original.header
    for header, message in [({**h, "source": {**h["source"], "file": "../evil.npy"}}, "source.file"),
                            ({k: v for k, v in h.items() if k != "grid"}, "'grid'"),
                            ({**h, "batch": 0}, "'batch'"),
                            ({**h, "n_images": h["n_images"] + 1}, "does not decode")]:
        archive.unlink()
        write_archive(archive, dataclasses.replace(original, header=header))
        with pytest.raises(ArchiveError, match=message):
            api.decompress(archive, tmp_path / "out", model=binary_model, quiet=True)
        assert not (tmp_path / "out").exists()


def test_names_that_would_collide_are_refused_and_suffixes_become_png(tmp_path, binary_model,
                                                                      mnist_subset):
    src = tmp_path / "imgs"
    src.mkdir()
    Image.fromarray(mnist_subset[0] * 255).save(src / "a.bmp")
    Image.fromarray(mnist_subset[1] * 255).save(src / "a.png")
    with pytest.raises(DataError, match="would both be restored as a.png"):
        api.compress(src, tmp_path / "c.acn", model=binary_model, quiet=True)
    (src / "a.png").rename(src / "b.png")
    api.compress(src, tmp_path / "c.acn", model=binary_model, quiet=True)
    api.decompress(tmp_path / "c.acn", tmp_path / "out", model=binary_model, quiet=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png")) > 0,
                          mnist_subset[0] > 0)


def test_upper_case_array_name_and_too_many_chains(tmp_path, binary_model, mnist_subset):
    src = tmp_path / "DIGITS.NPY"
    with open(src, "wb") as f:
        np.save(f, mnist_subset[:5])
    r = api.compress(src, tmp_path / "u.acn", model=binary_model, order="tour", chains=50,
                     quiet=True)
    assert r["chains"] == 5
    api.decompress(tmp_path / "u.acn", tmp_path / "out", model=binary_model, quiet=True)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["DIGITS.NPY"]
    key = lambda a: sorted(map(bytes, a.reshape(len(a), -1)))
    assert key(np.load(tmp_path / "out" / "DIGITS.NPY")) == key(mnist_subset[:5])


def test_codes_far_from_zero_get_a_wide_enough_grid(tmp_path, mnist_subset):
    """Trained codes reach |c| ~ 16: the grid must follow them, or bits-back leaks."""
    import torch
    from acnzip.modelfile import load_model, save_model
    from acnzip.protocol import Layout, chain_lengths, encode_dataset
    from codec import AnsStack, BinGrid
    mf = load_model(make_model_file(tmp_path / "m.pt"))
    with torch.no_grad():
        mf.model.encoder.fc.weight.mul_(40.0)          # codes up to |c| ~ 20
        mf.model.encoder.fc.bias.add_(12.0)
    x = mnist_subset[:, None]
    codes = mf.model.codes(x)
    wide = api.grid_for(codes)
    assert wide.range >= np.abs(codes).max() + 8 > 16
    excess = {}
    for grid in (BinGrid(), wide):             # enough initial bits that start-up is negligible
        stack = AnsStack.with_initial_bits(512, seed=0)
        costs = encode_dataset(api._coder(mf, grid, 1), x, np.arange(len(x)),
                               Layout(chain_lengths(len(x), 6)), stack)
        ideal = costs.kl_bits + costs.recon_bits
        excess[grid.range] = (stack.num_valid_bits - stack.initial_bits - ideal) / ideal
    assert excess[wide.range] < 0.01 < 0.05 < excess[8.0]      # measured: 0.2% vs 12%
    save_model(tmp_path / "far.pt", mf.model, mf.train_config, mf.gmm, {})
    np.save(tmp_path / "d.npy", mnist_subset)
    api.compress(tmp_path / "d.npy", tmp_path / "far.acn", model=tmp_path / "far.pt", quiet=True)
    assert api.archive_info(tmp_path / "far.acn")["grid"]["range"] == wide.range
    api.decompress(tmp_path / "far.acn", tmp_path / "out", model=tmp_path / "far.pt", quiet=True)
    assert np.array_equal(np.load(tmp_path / "out" / "d.npy"), mnist_subset)
