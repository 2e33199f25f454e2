import pytest
import torch
from image_tree_helpers import make_corrupt, make_image, make_tree, make_truncated_jpeg
from PIL import Image

from sppnet.data.decode import ImageDecodeError, load_image
from sppnet.data.image_folder import ImageFolder, read_image_size
from sppnet.data.transforms import FullImageTransform


@pytest.fixture
def tree(tmp_path):
    root = make_tree(
        tmp_path / "ds",
        {
            "dog": [("d1.jpg", (40, 30)), ("d0.png", (30, 50))],
            "cat": [("c0.JPG", (45, 45)), ("c1.bmp", (20, 60))],
            "bird": [("b0.webp", (50, 25))],
        },
        splits={
            "train": ["dog/d1.jpg", "cat/c0.JPG", "", "# a comment", "bird/b0.webp"],
            "val": ["cat/c1.bmp", "dog/d0.png"],
        },
    )
    (root / "empty").mkdir()  # no images: not a class
    (root / ".hidden").mkdir()
    make_image(root / ".hidden" / "x.png", (10, 10))
    make_image(root / "cat" / ".ds.png", (10, 10))  # hidden file: ignored
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_classes_and_samples(tree):
    ds = ImageFolder(tree)
    assert ds.classes == ["bird", "cat", "dog"]
    assert ds.class_to_idx == {"bird": 0, "cat": 1, "dog": 2}
    names = [(p.relative_to(tree).as_posix(), y) for p, y in ds.samples]
    assert names == [
        ("bird/b0.webp", 0),
        ("cat/c0.JPG", 1),
        ("cat/c1.bmp", 1),
        ("dog/d0.png", 2),
        ("dog/d1.jpg", 2),
    ]
    assert ds.targets == [0, 1, 1, 2, 2]
    assert len(ds) == 5
    img, label = ds[1]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (45, 45)
    assert label == 1
    assert ds[-1][1] == 2
    with pytest.raises(IndexError):
        ds[5]


def test_nested_images_belong_to_their_class(tmp_path):
    root = make_tree(tmp_path, {"a": [("x.png", (8, 8))]})
    make_image(root / "a" / "sub" / "y.png", (9, 9))
    ds = ImageFolder(root)
    assert [p.relative_to(root).as_posix() for p, _ in ds.samples] == ["a/sub/y.png", "a/x.png"]


def test_transform_is_applied(tree):
    ds = ImageFolder(tree, transform=FullImageTransform(shorter=20, mean=128.0))
    t, label = ds[0]  # bird/b0.webp, 50 x 25
    assert isinstance(t, torch.Tensor) and t.shape == (3, 20, 40) and label == 0


def test_split_files(tree):
    train = ImageFolder(tree, split="train")
    assert [p.relative_to(tree).as_posix() for p, _ in train.samples] == [
        "dog/d1.jpg",
        "cat/c0.JPG",
        "bird/b0.webp",
    ]
    assert train.targets == [2, 1, 0]
    val = ImageFolder(tree, split="val")
    assert val.classes == train.classes  # labels agree across splits
    assert val.targets == [1, 2]


def test_split_file_errors(tree):
    with pytest.raises(ValueError, match=r"not found; available splits: \['train', 'val'\]"):
        ImageFolder(tree, split="test")
    (tree / "splits" / "bad.txt").write_text("dog/d1.jpg\n\ncat/missing.jpg\n")
    with pytest.raises(ValueError) as err:
        ImageFolder(tree, split="bad")
    msg = str(err.value)
    assert "bad.txt, line 3" in msg and "missing.jpg" in msg and "does not exist" in msg
    (tree / "splits" / "unknown.txt").write_text("horse/h.jpg\n")
    with pytest.raises(ValueError, match="line 1: unknown class 'horse'"):
        ImageFolder(tree, split="unknown")
    (tree / "splits" / "dup.txt").write_text("dog/d1.jpg\ndog/d1.jpg\n")
    with pytest.raises(ValueError, match=r"line 2: 'dog/d1\.jpg' already listed on line 1"):
        ImageFolder(tree, split="dup")
    (tree / "splits" / "escape.txt").write_text("dog/../../outside.jpg\n")
    with pytest.raises(ValueError, match="outside"):
        ImageFolder(tree, split="escape")
    outside = make_image(tree.parent / "elsewhere.png", (12, 12))
    (tree / "dog" / "link.png").symlink_to(outside)  # symlinked images are fine
    (tree / "splits" / "link.txt").write_text("dog/link.png\n")
    assert ImageFolder(tree, split="link")[0][0].size == (12, 12)
    (tree / "splits" / "flat.txt").write_text("d1.jpg\n")
    with pytest.raises(ValueError, match="expected 'class/file'"):
        ImageFolder(tree, split="flat")
    with pytest.raises(ValueError, match="plain name"):
        ImageFolder(tree, split="../train")


def test_root_without_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match=str(tmp_path)):
        ImageFolder(tmp_path)
    with pytest.raises(ValueError, match="existing folder"):
        ImageFolder(tmp_path / "nope")


@pytest.fixture
def bad_tree(tmp_path):
    root = make_tree(tmp_path, {"a": [("0.png", (20, 10))], "b": [("2.png", (10, 30))]})
    make_corrupt(root / "a" / "1.jpg")
    make_truncated_jpeg(root / "b" / "3.jpg")  # the last sample
    return root


def test_bad_files_raise_naming_the_file(bad_tree):
    ds = ImageFolder(bad_tree)
    for index, name in ((1, r"1\.jpg"), (3, r"3\.jpg")):
        with pytest.raises(ImageDecodeError, match=name) as err:
            ds[index]
        assert err.value.path == ds.samples[index][0]
    assert ds.skipped == 0 and ds.bad_files == []


def test_skip_bad_replaces_with_the_next_good_sample(bad_tree):
    ds = ImageFolder(bad_tree, skip_bad=True)
    assert [p.name for p, _ in ds.samples] == ["0.png", "1.jpg", "2.png", "3.jpg"]
    img, label = ds[1]  # corrupt -> next good sample "b/2.png"
    assert img.size == (10, 30) and label == 1
    assert ds.skipped == 1 and ds.bad_files == [ds.samples[1][0]]
    img, label = ds[3]  # truncated, last -> wraps around to "a/0.png"
    assert img.size == (20, 10) and label == 0
    assert ds.skipped == 2 and [p.name for p in ds.bad_files] == ["1.jpg", "3.jpg"]
    ds[1]  # already known bad: skipped again without decoding, counted again
    assert ds.skipped == 3 and len(ds.bad_files) == 2
    assert ds[0][0].size == (20, 10) and ds.skipped == 3


def test_skip_bad_with_nothing_decodable(tmp_path):
    make_corrupt(tmp_path / "a" / "x.jpg")
    ds = ImageFolder(tmp_path, skip_bad=True)
    with pytest.raises(ImageDecodeError, match="none of the 1 images"):
        ds[0]


def test_image_sizes_read_from_headers(tree):
    make_image(tree / "dog" / "rot.jpg", (40, 20), exif_orientation=6)
    make_image(tree / "dog" / "flipped.jpg", (40, 20), exif_orientation=2)  # no 90° turn
    ds = ImageFolder(tree)
    sizes = ds.image_sizes()
    by_name = {p.name: s for (p, _), s in zip(ds.samples, sizes, strict=True)}
    assert by_name["rot.jpg"] == (40, 20)  # (height, width): stored 40 wide, shown 40 tall
    assert by_name["flipped.jpg"] == (20, 40)
    assert by_name["c1.bmp"] == (60, 20)
    for (path, _), (h, w) in zip(ds.samples, sizes, strict=True):
        assert load_image(path).size == (w, h)  # what decoding gives
    assert ds.image_sizes() is not ds.image_sizes()  # a copy of the cache
    assert ds.image_sizes() == sizes


def test_image_sizes_with_bad_files(bad_tree):
    with pytest.raises(ImageDecodeError, match=r"1\.jpg"):
        ImageFolder(bad_tree).image_sizes()
    ds = ImageFolder(bad_tree, skip_bad=True)
    # the corrupt file takes the size of its replacement; the truncated one has a header
    assert ds.image_sizes() == [(10, 20), (30, 10), (30, 10), (40, 60)]
    assert [p.name for p in ds.bad_files] == ["1.jpg"]
    assert read_image_size(bad_tree / "a" / "0.png") == (10, 20)
    with pytest.raises(ImageDecodeError, match="no such file"):
        read_image_size(bad_tree / "missing.png")


def test_repr_names_root_split_and_counts(tree):
    ds = ImageFolder(tree, split="val", skip_bad=True)
    assert repr(ds) == (
        f"ImageFolder(root={str(tree)!r}, split='val', classes=3, samples=2, transform=None, "
        "skip_bad=True)"
    )
