"""Empty folders of a DATA folder come back (format version 7, `source.folders`): a tree is
restored whole, with nothing created outside the output folder or through a link, and a
crafted list of folders is refused in one line."""
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from acnzip import api
from acnzip.archive import (Archive, ArchiveError, pack, read_archive, unpack,
                            write_archive)
from acnzip.atomic import OutputExistsError, _remove_tree, write_folder
from acnzip.data import empty_folders

from .test_archive import ARCHIVE, NAMES, _portable_header, _with_header, valid_header
from .test_input_safety import _binary_folder
from .test_safety import run_cli


def tree(root: Path) -> list[str]:
    """Every file and folder under root, relative, sorted."""
    return sorted(p.relative_to(root).as_posix() + ("/" if p.is_dir() else "")
                  for p in root.rglob("*"))


@pytest.mark.parametrize("bits_back, fitted, version", [(True, True, 10), (True, False, 9),
                                                      (False, False, 8)])
def test_an_8bit_folder_with_empty_folders_comes_back_whole(tmp_path, monkeypatch, bits_back,
                                                            fitted, version):
    """Versions 8 (8-bit models' finer networks), 9 (the GMM's component by bits back) and 10
    (weights fitted to float32, finer gates) carry version 7's empty folders too."""
    from acnzip.nn.integer import PRECISION_8BIT_V8
    monkeypatch.setattr(api, "BASE_BITS_BACK", bits_back)
    if not fitted:
        monkeypatch.setattr(api, "PRECISION_8BIT", PRECISION_8BIT_V8)
    from PIL import Image
    from .conftest import make_model_file
    from .test_retired_models import _grey_digits
    root = tmp_path / "g"
    (root / "empty" / "deeper").mkdir(parents=True)
    for i, img in enumerate(_grey_digits(3, seed=5)):
        Image.fromarray(img).save(root / f"{i}.png")
    model = make_model_file(tmp_path / "m8.pt", binary=False, seed=2)
    api.compress(root, tmp_path / "g.acn", model=model, order="keep", quiet=True)
    a = read_archive(tmp_path / "g.acn")
    assert a.version == version and a.header["source"]["folders"] == ["empty/deeper"]
    api.decompress(tmp_path / "g.acn", tmp_path / "out", model=model, quiet=True)
    assert tree(tmp_path / "out") == tree(root)


def test_empty_folders_are_the_deepest_folders_with_no_file_beneath():
    folders = ["a", "a/b", "c", "c/d", "c/d/e", "f", "g"]
    files = ["a/b/x.png", "c/y.txt", "g/h/z.png"]
    assert empty_folders(folders, files) == ["c/d/e", "f"]
    assert empty_folders([], ["x.png"]) == []


@pytest.mark.parametrize("order", ["keep", "set"])
def test_a_folder_with_empty_folders_comes_back_whole(tmp_path, binary_model, order,
                                                      monkeypatch):
    monkeypatch.setattr(api, "BASE_BITS_BACK", False)      # version 9 would describe it too
    root = _binary_folder(tmp_path / "d")
    for d in ("empty", "nested/deeper/deepest", "class_7", "with_file/also_empty", ".hidden"):
        (root / d).mkdir(parents=True)
    (root / "with_file" / "notes.txt").write_text("notes")
    arc = tmp_path / "d.acn"
    r = api.compress(root, arc, model=binary_model, order=order, quiet=True)
    assert r["n_empty_folders"] == 5
    h = read_archive(arc).header
    assert h["source"]["folders"] == [".hidden", "class_7", "empty", "nested/deeper/deepest",
                                      "with_file/also_empty"]
    assert read_archive(arc).version == 7          # a binary model: no weight levels (8)
    code, text = run_cli("decompress", arc, "-o", tmp_path / "out", "--model", binary_model)
    assert code == 0 and "5 empty folders" in text, text
    restored = tree(tmp_path / "out")
    if order == "set":                        # images come back as 0.png, ...: compare the rest
        restored = [p for p in restored if not p.endswith(".png")]
        assert [p for p in tree(root) if not p.endswith(".png")] == restored
    else:
        assert restored == tree(root)
    code, text = run_cli("info", arc)
    assert code == 0 and "+ 1 other file kept byte for byte + 5 empty folders" in text, text


def test_a_folder_without_empty_folders_keeps_version_6(tmp_path, binary_model, monkeypatch):
    monkeypatch.setattr(api, "BASE_BITS_BACK", False)
    root = _binary_folder(tmp_path / "d")
    (root / "sub").mkdir()
    (root / "sub" / "a.txt").write_text("a")
    api.compress(root, tmp_path / "d.acn", model=binary_model, order="set", quiet=True)
    a = read_archive(tmp_path / "d.acn")
    assert a.version == 6 and a.header["source"] == {"kind": "folder"}


def test_a_folder_holding_only_the_archive_comes_back_empty(tmp_path, binary_model):
    """The archive written inside DATA is left out of the inputs; its folder is then empty."""
    root = _binary_folder(tmp_path / "d")
    (root / "archives").mkdir()
    api.compress(root, root / "archives" / "d.acn", model=binary_model, quiet=True)
    api.decompress(root / "archives" / "d.acn", tmp_path / "out", model=binary_model,
                   quiet=True)
    assert tree(tmp_path / "out") == [*sorted(f"{i}.png" for i in range(4)), "archives/"]


def test_decompress_f_creates_folders_and_never_through_a_link_or_over_a_file(tmp_path,
                                                                               binary_model):
    root = _binary_folder(tmp_path / "d")
    (root / "e" / "f").mkdir(parents=True)
    arc = tmp_path / "d.acn"
    api.compress(root, arc, model=binary_model, quiet=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / "e").write_text("precious")                      # a file where a folder goes
    code, text = run_cli("decompress", arc, "-o", out, "--model", binary_model, "-q", "-f")
    assert code == 1 and "is a file, the archive restores a folder there" in text, text
    assert (out / "e").read_text() == "precious" and not (out / "0.png").exists()
    (out / "e").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "e").symlink_to(elsewhere)                        # a link where a folder goes
    code, text = run_cli("decompress", arc, "-o", out, "--model", binary_model, "-q", "-f")
    assert code == 1 and "symbolic link" in text, text
    assert list(elsewhere.iterdir()) == [] and not (out / "0.png").exists()
    (out / "e").unlink()
    (out / "e" / "f").mkdir(parents=True)                    # an existing folder is kept
    (out / "e" / "f" / "mine.txt").write_text("mine")
    code, text = run_cli("decompress", arc, "-o", out, "--model", binary_model, "-q", "-f")
    assert code == 0, text
    assert (out / "e" / "f" / "mine.txt").read_text() == "mine" and (out / "0.png").is_file()


def test_write_folder_creates_the_folders_in_new_and_existing_folders(tmp_path):
    write_folder(tmp_path / "new", [("a", lambda p: p.write_bytes(b"1"))],
                 folders=["x/y", "z"])
    assert tree(tmp_path / "new") == ["a", "x/", "x/y/", "z/"]
    write_folder(tmp_path / "new", [("a", lambda p: p.write_bytes(b"2"))], force=True,
                 folders=["q"])
    assert tree(tmp_path / "new") == ["a", "q/", "x/", "x/y/", "z/"]
    with pytest.raises(OutputExistsError, match="is a file"):
        write_folder(tmp_path / "new", [], force=True, folders=["a/b"])
    assert (tmp_path / "new" / "a").read_bytes() == b"2"


def _folders_header(folders, **changes) -> dict:
    h = valid_header(**changes)
    h["source"] = {"kind": "folder", "folders": folders}
    return h


@pytest.mark.parametrize("folders, message", [
    ([], "non-empty list of paths"), ("a", "non-empty list of paths"),
    ([3], "non-empty list of paths"), (["\ud800"], "non-empty list of paths"),
    (["x" * 5000], "non-empty list of paths"), ([""], "unsafe path"),
    (["../up"], "unsafe path"), (["/abs"], "unsafe path"), (["a\\b"], "unsafe path"),
    (["a", "a"], "twice"), (["a", "a/b"], "both a file and a folder"),
    (["z", "a"], "must be sorted")])
def test_crafted_folder_lists_are_refused_in_one_line(folders, message):
    with pytest.raises(ArchiveError, match=message) as err:
        unpack(_with_header(_folders_header(folders), version=7))
    assert "\n" not in str(err.value)


def test_folders_need_version_7_and_a_folder_source_has_nothing_else():
    assert unpack(_with_header(_folders_header(["a/b", "c"]), version=7)).header[
        "source"]["folders"] == ["a/b", "c"]
    with pytest.raises(ArchiveError, match="needs format version 7"):
        unpack(_with_header(_folders_header(["a"]), version=6))
    npz = {"kind": "npz", "file": "x.npz", "key": "x", "ndim": 3, "folders": ["../up"]}
    with pytest.raises(ArchiveError, match="'source.folders' is only for a folder"):
        unpack(_with_header(valid_header(source=npz), version=7))
    with pytest.raises(ArchiveError, match="only a kind and its empty folders"):
        unpack(_with_header(valid_header(source={"kind": "folder", "x": 1}), version=7))
    plain = Archive(_portable_header(), ARCHIVE.payload, NAMES)
    foldered = Archive({**_portable_header(), "source": {"kind": "folder", "folders": ["e"]}},
                       ARCHIVE.payload, NAMES)
    assert [unpack(pack(a)).version for a in (plain, foldered)] == [4, 7]
    assert struct.unpack_from("<H", pack(foldered), 4)[0] == 7


@pytest.mark.parametrize("order, folders, message", [
    ("set", ["1.png"], "'1.png' is both a restored image and a kept folder"),
    ("set", ["1.png/x"], "'1.png' is both a restored image and a kept folder"),
    ("set", ["notes.txt"], "twice"), ("set", ["notes.txt/x"], "both a file and a folder"),
    ("keep", ["0.png"], "twice"), ("keep", ["0.png/x"], "both a file and a folder")])
def test_folders_where_restored_files_go_are_refused_before_decoding(
        tmp_path, binary_model, order, folders, message):
    """A crafted archive whose folders meet its files: decompress and info refuse it in one
    line and write nothing."""
    root = _binary_folder(tmp_path / "d")
    (root / "notes.txt").write_text("n")
    arc = tmp_path / "d.acn"
    api.compress(root, arc, model=binary_model, order=order, quiet=True)
    a = read_archive(arc)
    a.header["source"] = {"kind": "folder", "folders": folders}
    a.version = None                                           # written as version 7
    crafted = tmp_path / "crafted.acn"
    write_archive(crafted, a)
    for cmd in (["decompress", crafted, "-o", tmp_path / "out", "--model", binary_model],
                ["info", crafted]):
        code, text = run_cli(*cmd)
        assert code == 1 and message in text and len(text.strip().splitlines()) == 1, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.acn", "d", "d.acn"]


def test_a_reader_that_goes_away_is_no_error(tmp_path, binary_model):
    """`acnzip info A.acn | head -1`: the pipe's reader closing is not an 'Error:' line."""
    root = _binary_folder(tmp_path / "d")
    api.compress(root, tmp_path / "d.acn", model=binary_model, quiet=True)
    p = subprocess.Popen([sys.executable, "-m", "acnzip", "info", "--json", tmp_path / "d.acn"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()                     # before the child has written anything (it imports)
    err = p.stderr.read()
    assert p.wait(timeout=120) == 1 and err == b"", err


def test_a_list_of_folders_too_long_for_a_reader_is_refused_at_compress(
        tmp_path, binary_model, monkeypatch):
    """A writer never makes a header longer than a reader inflates (MAX_HEADER_JSON)."""
    from acnzip import archive
    root = _binary_folder(tmp_path / "d")
    for i in range(50):
        (root / f"folder-{i:03d}-{'x' * 100}").mkdir()
    r = api.compress(root, tmp_path / "ok.acn", model=binary_model, quiet=True)
    header_json = len(archive._header_json(read_archive(tmp_path / "ok.acn").header))
    monkeypatch.setattr(archive, "MAX_HEADER_JSON", header_json - 1)

    def no_coding(*args):
        raise AssertionError("the model was read: the refusal came after the coding began")
    monkeypatch.setattr(api, "read_model_bytes", no_coding)
    code, text = run_cli("compress", root, "-o", tmp_path / "big.acn", "--model",
                         binary_model, "-q")
    assert r["n_empty_folders"] == 50 and code == 1, text
    assert "over the" in text and "50 empty folders is too long" in text, text
    assert not (tmp_path / "big.acn").exists()


def test_path_checks_find_every_conflict_and_stay_linear_in_depth():
    """check_paths walks a tree of (parent, part) nodes: a conflict is found whichever path
    comes first, and paths 2,000 folders deep cost their length, not its square (the old
    check built every parent of every path)."""
    from acnzip.archive import check_paths
    deep = "/".join(["d"] * 2000)
    check_paths([f"{deep}/{i}" for i in range(300)] + ["d/e", "x"], "t")
    for paths, bad in ((["a/b/c", "a/b"], "'a/b'"), (["a/b", "a/b/c"], "'a/b'"),
                       ([deep, f"{deep}/x"], f"'{deep}'"), (["a", "b", "a/x/y"], "'a'")):
        with pytest.raises(ArchiveError, match=f"t: {bad} is both a file and a folder"):
            check_paths(paths, "t")
    check_paths(["a/b", "a/c", "ab", "a b/c"], "t")


def test_a_deep_empty_folder_comes_back_through_the_cli(tmp_path, binary_model):
    """Folders are made, walked and removed without recursion: what compress reads (here 900
    folders deep) decompress writes, into a new folder and into an existing one."""
    try:
        root = _binary_folder(tmp_path / "d")
        deep = "/".join(["d"] * 900)
        (root / deep).mkdir(parents=True)
        api.compress(root, tmp_path / "d.acn", model=binary_model, quiet=True)
        (tmp_path / "old").mkdir()
        (tmp_path / "old" / "mine.txt").write_text("mine")
        for out, force in (("new", []), ("old", ["-f"])):
            done = subprocess.run([sys.executable, "-m", "acnzip", "decompress",
                                   tmp_path / "d.acn", "-o", tmp_path / out, "--model",
                                   binary_model, "-q", *force],
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            assert (tmp_path / out / deep).is_dir()
            assert not any((tmp_path / out / deep).iterdir())
        assert (tmp_path / "old" / "mine.txt").read_text() == "mine"
        assert not [p for p in (tmp_path / "old").iterdir() if p.name.startswith(".")]
        deeper = "/".join(["e"] * 1500)             # past Python's recursion limit
        for force in (False, True):
            write_folder(tmp_path / "w", [(f"{deeper}/f.txt", lambda p: p.write_bytes(b"f"))],
                         force=force, folders=[f"{deeper}/g"])
            assert (tmp_path / "w" / deeper / "f.txt").read_bytes() == b"f"
            assert (tmp_path / "w" / deeper / "g").is_dir()
        assert [p.name for p in (tmp_path / "w").iterdir()] == ["e"]
    finally:                                    # pytest removes tmp_path recursively
        for name in ("d", "new", "old", "w"):
            _remove_tree(tmp_path / name)


def test_into_an_existing_folder_every_folder_is_made_before_any_file_is_replaced(
        tmp_path, monkeypatch):
    """A folder that cannot be made fails the write before anything is replaced, and the
    folders made until then are removed; the temporary folder holds the files only."""
    from acnzip import atomic
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"old")
    real_mkdir, made_in_tmp = os.mkdir, []

    def mkdir(path, *args, **kwargs):
        if ".tmp/" in str(path):             # inside the temporary folder
            made_in_tmp.append(path)
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)
    monkeypatch.setattr(atomic.os, "mkdir", mkdir)
    files = [("a.png", lambda p: p.write_bytes(b"new")),
             ("s/t/b.png", lambda p: p.write_bytes(b"b"))]
    with pytest.raises(PermissionError):
        write_folder(out, files, force=True, folders=["e/f", "g/locked"])
    assert tree(out) == ["a.png"] and (out / "a.png").read_bytes() == b"old"
    write_folder(out, files, force=True, folders=["e/f", "g/h"])
    assert tree(out) == ["a.png", "e/", "e/f/", "g/", "g/h/", "s/", "s/t/", "s/t/b.png"]
    assert (out / "a.png").read_bytes() == b"new" and made_in_tmp == []
