"""Loading DATA: folders of images and arrays agree; every problem is a one-line DataError."""
import numpy as np
import pytest
from PIL import Image

from acnzip.data import DataError, detect_binary, load_dataset


def _write_pngs(root, images, mode):
    names = []
    for i, img in enumerate(images):
        name = f"{'a' if i % 2 else 'b'}/sub/{i:03d}.png"        # nested, sorting != index
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.squeeze(-1) if mode == "L" else img, mode).save(root / name)
        names.append(name)
    return names


@pytest.mark.parametrize("mode, channels, values", [("L", 1, 256), ("RGB", 3, 256), ("L", 1, 2)])
def test_png_folder_roundtrips_like_the_array(tmp_path, mode, channels, values):
    rng = np.random.default_rng(0)
    images = rng.integers(0, values, (9, 6, 5, channels), dtype=np.uint8)
    images *= 255 if values == 2 else 1
    names = _write_pngs(tmp_path / "imgs", images, mode)
    np.save(tmp_path / "imgs.npy", images)
    folder, array = load_dataset(tmp_path / "imgs"), load_dataset(str(tmp_path / "imgs.npy"))
    order = np.argsort(names)
    assert folder.names == sorted(names)
    assert np.array_equal(folder.images, images[order]) and folder.images.dtype == np.uint8
    assert np.array_equal(array.images, images) and array.names[0] == "0"
    assert folder.mode == mode and folder.binary == array.binary == (values == 2)
    assert folder.model_pixels().shape == (9, channels, 6, 5)
    if values == 2:
        assert folder.binary_value == 255 and set(np.unique(folder.model_pixels())) <= {0, 1}


def test_mixed_sizes_is_a_clear_error(tmp_path):
    Image.new("L", (28, 28)).save(tmp_path / "a.png")
    Image.new("L", (32, 28)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match=r"b\.png is 32x28 but a\.png is 28x28") as e:
        load_dataset(tmp_path)
    assert "\n" not in str(e.value)


def test_mixed_modes_is_a_clear_error(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    with pytest.raises(DataError, match="b.png has mode RGB but a.png has mode L"):
        load_dataset(tmp_path)


def test_unreadable_and_unsupported_images_are_kept_as_files(tmp_path):
    with pytest.raises(DataError, match="no images acnzip codes"):
        load_dataset(tmp_path)
    Image.new("I;16", (4, 4)).save(tmp_path / "deep.png")
    with pytest.raises(DataError, match="no images acnzip codes .* 1 other file$"):
        load_dataset(tmp_path)
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    ds = load_dataset(tmp_path)
    assert ds.names == ["a.png"]
    assert [name for name, _ in ds.other_files] == ["broken.png", "deep.png"]
    assert ds.other_files[0][1] == (tmp_path / "broken.png").read_bytes()
    assert ds.input_bytes == sum(p.stat().st_size for p in tmp_path.iterdir())


def test_array_errors(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((2, 4, 4), np.float32))
    np.save(tmp_path / "five.npy", np.zeros((2, 4, 4, 5), np.uint8))
    np.save(tmp_path / "empty.npy", np.zeros((0, 4, 4), np.uint8))
    np.savez(tmp_path / "multi.npz", a=np.zeros((2, 4, 4), np.uint8),
             b=np.ones((3, 4, 4), np.uint8))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    cases = {"f.npy": "dtype float32 is not supported", "five.npy": "shape",
             "empty.npy": "no images", "multi.npz": "holds a, b and no 'x'",
             "multi.npz:c": "no array 'c'", "junk.npz": "not a valid .npz",
             "missing.npy": "no such file", "f.txt": "no such file"}
    for spec, message in cases.items():
        with pytest.raises(DataError, match=message):
            load_dataset(f"{tmp_path}/{spec}")
    assert len(load_dataset(f"{tmp_path}/multi.npz:b")) == 3


def test_npz_key_x_or_only_array(tmp_path):
    x = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.savez(tmp_path / "one.npz", images=x)
    np.savez(tmp_path / "withx.npz", x=x, y=np.zeros(2))
    assert np.array_equal(load_dataset(tmp_path / "one.npz").images[..., 0], x)
    assert np.array_equal(load_dataset(tmp_path / "withx.npz").images[..., 0], x)


def test_binary_detection_and_validation_read_like_training():
    assert detect_binary(np.array([0, 1, 1], np.uint8)) == (True, 1)
    assert detect_binary(np.array([0, 255], np.uint8)) == (True, 255)
    assert detect_binary(np.zeros(3, np.uint8)) == (True, 1)
    assert detect_binary(np.array([0, 1, 255], np.uint8))[0] is False


def test_validation_must_match_training(tmp_path):
    np.save(tmp_path / "bin.npy", np.array([[[0, 1]]], np.uint8).repeat(3, 0))
    np.save(tmp_path / "grey.npy", np.array([[[0, 7]]], np.uint8).repeat(3, 0))
    np.save(tmp_path / "big.npy", np.zeros((3, 2, 3), np.uint8))
    train = load_dataset(tmp_path / "bin.npy")
    with pytest.raises(DataError, match="not binary"):
        load_dataset(tmp_path / "grey.npy").model_pixels(like=train)
    with pytest.raises(DataError, match="shape"):
        load_dataset(tmp_path / "big.npy").model_pixels(like=train)
    zeros = load_dataset(tmp_path / "big.npy")
    assert zeros.binary                        # all-zero data is binary
