"""siamtrack.data: sources, layouts, photos and SiamFC pair sampling (fast, generated data)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from siamtrack.config import DataConfig
from siamtrack.data import (BoxFilter, DataWarning, GOT10kSource, OTBSource, PairDataset,
                            PhotoSource, SyntheticSource, crop_affine, make_clip, make_sequence,
                            read_boxes)
from dataset_writers import write_got10k_folder, write_otb_folder
from siamtrack.data.synthetic import SyntheticSequence
from siamtrack.geometry import crop_square

MAGENTA = (255, 0, 255)


def small_seq(seed: int, n: int = 16, name: str | None = None) -> SyntheticSequence:
    return make_sequence(n, (160, 120), (30, 24), growth=1.2, seed=seed, name=name)


def magenta_fraction(img: np.ndarray) -> float:
    img = img.astype(np.int16)
    return float(((img[..., 0] > 200) & (img[..., 1] < 60) & (img[..., 2] > 200)).mean())


def quiet_dataset(sources, **kwargs) -> PairDataset:
    kwargs.setdefault("pairs_per_epoch", 64)
    return PairDataset(sources, {"got10k": 1.0, "otb": 1.0, "photos": 1.0, "synthetic": 1.0},
                       **kwargs)


@pytest.fixture(scope="module")
def got10k_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("got10k")
    write_got10k_folder(root, [small_seq(1, name="seq_a"), small_seq(2, name="seq_b")], "val")
    return root


# ---------------------------------------------------------------------------------------------
# geometry helpers


def test_crop_affine_matches_crop_square():
    img = make_sequence(2, (200, 150), seed=3).frames[0]
    for center, size, out in [((100.3, 70.8), 61.5, 127), ((5.0, 140.0), 300.0, 255)]:
        a = crop_affine(img, center, size, out)
        b = crop_square(img, center, size, out)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_make_clip_renders_make_sequence_frames():
    seq = make_sequence(10, seed=4)
    clip = make_clip(10, seed=4)
    np.testing.assert_array_equal(clip.boxes, seq.boxes)
    for k in (0, 5, 9):
        np.testing.assert_array_equal(clip.frame(k), seq.frames[k])


# ---------------------------------------------------------------------------------------------
# filter and parsing


def test_box_filter_sides_fraction_and_aspect():
    f = BoxFilter()
    boxes = np.array([
        [0, 0, 40, 40],      # ok
        [0, 0, 19, 40],      # side < 20
        [0, 0, 501, 300],    # side > 500 (and > half the width)
        [0, 0, 30, 130],     # aspect 0.23 < 0.25
        [0, 0, 130, 30],     # aspect 4.3 > 4
        [0, 0, 330, 40],     # width > 50% of 640
        [0, 0, np.nan, 40],  # absent
        [0, 0, -1, -1],      # GOT-10k's absent convention
        [0, 0, 320, 180],    # exactly half: ok
    ])
    assert f(boxes, (640, 360)).tolist() == [True, False, False, False, False, False, False, False,
                                              True]
    # per-side fraction vs area fraction: a 25x25 box in 640x360 is 4% of each side, 0.27% of area
    small = np.array([[0, 0, 25, 25]])
    assert f(small, (640, 360))[0]
    assert not BoxFilter(frac_of="area")(small, (640, 360))[0]
    # fraction of the *image*: the same box is too small for a huge image
    assert not f(np.array([[0, 0, 25, 25]]), (4000, 3000))[0]
    assert not f(boxes[:1], None)[0]                       # unknown image size -> unusable
    assert BoxFilter(enabled=False)(boxes, None).tolist()[:2] == [True, True]


def test_read_boxes_separators_polygons_and_bad_rows(tmp_path):
    p = tmp_path / "gt.txt"
    p.write_text("1,2,3,4\n5\t6\t7\t8\n9 10 11 12\nNaN,NaN,NaN,NaN\n"
                 "0,0,10,0,10,5,0,5\ngarbage\n1,2,3\n")
    with pytest.warns(DataWarning, match=r"malformed ground-truth rows at frames 6, 7"):
        b = read_boxes(p, "seq")
    assert b.shape == (7, 4)
    np.testing.assert_allclose(b[:3], [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    assert np.isnan(b[3]).all() and np.isnan(b[5]).all() and np.isnan(b[6]).all()
    np.testing.assert_allclose(b[4], [0, 0, 10, 5])


# ---------------------------------------------------------------------------------------------
# sources


def test_got10k_layout_is_read_by_toolkit_and_source(got10k_root):
    from got10k.datasets import GOT10k
    seqs = [small_seq(1), small_seq(2)]
    toolkit = GOT10k(str(got10k_root), subset="val", return_meta=True)
    assert toolkit.seq_names == ["seq_a", "seq_b"]
    files, anno, meta = toolkit[0]
    assert len(files) == 16 and anno.shape == (16, 4)
    np.testing.assert_allclose(anno, seqs[0].boxes, atol=0.006)
    assert meta["resolution"] == "(160, 120)"
    assert meta["cover"].shape == (16,) and (meta["absence"] == 0).all()

    for source in (GOT10kSource(got10k_root, "val"), GOT10kSource(got10k_root / "val"),
                   GOT10kSource(got10k_root / "val" / "seq_b")):
        assert source.kind == "got10k"
        rec = source.sequence(len(source) - 1)
        assert rec.boxes.dtype == np.float64 and rec.boxes.shape == (16, 4)
        assert rec.valid.dtype == bool and rec.valid.all()
        assert isinstance(rec.frames[0], str) and rec.frames[0].endswith("00000001.jpg")
    assert len(GOT10kSource(got10k_root, "val")) == 2


def test_got10k_experiment_reads_val_folder(got10k_root, tmp_path):
    from got10k.experiments import ExperimentGOT10k
    exp = ExperimentGOT10k(str(got10k_root), subset="val", result_dir=str(tmp_path / "r"),
                           report_dir=str(tmp_path / "p"))
    img_files, anno, meta = exp.dataset[1] if exp.dataset.return_meta else (*exp.dataset[1], None)
    assert len(img_files) == len(anno) == 16


def test_otb_layout_source(tmp_path):
    seqs = [small_seq(5, name="Walker"), small_seq(6, name="Jogging")]
    write_otb_folder(tmp_path, seqs)
    # a two-target OTB sequence, tab-separated, 1-based
    jog = tmp_path / "Jogging"
    (jog / "groundtruth_rect.txt").rename(jog / "groundtruth_rect.1.txt")
    rows = seqs[1].boxes.copy()
    rows[:, :2] += 1
    (jog / "groundtruth_rect.2.txt").write_text(
        "".join("\t".join(f"{v:.2f}" for v in r) + "\n" for r in rows))
    source = OTBSource(tmp_path)
    assert [source.name(i) for i in range(len(source))] == ["Jogging.1", "Jogging.2", "Walker"]
    for i, seq in [(0, seqs[1]), (1, seqs[1]), (2, seqs[0])]:
        frames, boxes, valid = source.sequence(i)
        assert len(frames) == 16 and frames[0].endswith("img/0001.jpg")
        np.testing.assert_allclose(boxes, seq.boxes, atol=0.006)  # 1-based -> 0-based
        assert valid.all()
    assert len(OTBSource(tmp_path / "Walker")) == 1


def test_synthetic_source_is_deterministic_and_lazy():
    a, b = SyntheticSource(4, seed=3, num_frames=12), SyntheticSource(4, seed=3, num_frames=12)
    other = SyntheticSource(4, seed=4, num_frames=12)
    assert len(a) == 4 and a.kind == "synthetic"
    fa, ba, va = a.sequence(2)
    fb, bb, vb = b.sequence(2)
    np.testing.assert_array_equal(ba, bb)
    np.testing.assert_array_equal(fa[7](), fb[7]())
    assert fa[7]().shape[2] == 3 and fa[7]().dtype == np.uint8
    assert va.any()
    assert not np.array_equal(other.sequence(2).boxes, ba)


def test_photo_source_filters_and_reports(tmp_path):
    img = make_sequence(1, (320, 240), seed=9).frames[0]
    (tmp_path / "pics").mkdir()
    cv2.imwrite(str(tmp_path / "pics" / "a.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    data = {"images": [
        {"file": "pics/a.jpg", "width": 320, "height": 240,
         "boxes": [[100, 80, 60, 40, "thing"], [10, 10, 8, 8, "tiny"], [0, 0, 300, 230, "huge"]]},
        {"file": "pics/missing.jpg", "width": 320, "height": 240, "boxes": [[1, 1, 50, 50, "x"]]},
        {"file": "pics/a.jpg", "width": 320, "height": 240, "boxes": []},
    ]}
    (tmp_path / "boxes.json").write_text(json.dumps(data))
    with pytest.warns(DataWarning, match="missing"):
        src = PhotoSource(tmp_path / "boxes.json")
    assert len(src) == 1 and src.static and src.kind == "photos"
    frames, boxes, valid = src.sequence(0)
    assert frames == [str(tmp_path / "pics" / "a.jpg")]
    np.testing.assert_allclose(boxes, [[100, 80, 60, 40]])
    ds = quiet_dataset([src])
    z, x, info = ds.sample(3)
    assert z.shape == (127, 127, 3) and x.shape == (255, 255, 3) and info.kind == "photos"
    assert info.frame_z == info.frame_x == 0
    assert not np.array_equal(ds.sample(3)[0], ds.sample(4)[0])  # augmentation differs per pair


# ---------------------------------------------------------------------------------------------
# absent targets and broken data


def test_absent_frames_are_never_sampled(tmp_path):
    seq = small_seq(11, n=20, name="with_gaps")
    absent_nan, absent_label, absent_minus1 = [3, 4, 5, 6, 12], [15], [18]
    for k in absent_nan + absent_label + absent_minus1:
        seq.frames[k] = np.full_like(seq.frames[k], MAGENTA)
    seq.boxes[absent_nan] = np.nan
    folder = write_got10k_folder(tmp_path, [seq], "train") / "with_gaps"
    # frame 15: finite box but absence.label = 1; frame 18: GOT-10k's -1,-1,-1,-1
    lines = (folder / "absence.label").read_text().split()
    lines[15] = "1"
    (folder / "absence.label").write_text("\n".join(lines) + "\n")
    gt = (folder / "groundtruth.txt").read_text().splitlines()
    gt[18] = "-1,-1,-1,-1"
    (folder / "groundtruth.txt").write_text("\n".join(gt) + "\n")

    src = GOT10kSource(tmp_path, "train")
    valid = src.sequence(0).valid
    bad = set(absent_nan + absent_label + absent_minus1)
    assert [k for k in range(20) if not valid[k]] == sorted(bad)
    ds = quiet_dataset([src], pairs_per_epoch=200, max_frame_gap=3)
    for i in range(60):
        z, x, info = ds.sample(i)
        assert info.frame_z not in bad and info.frame_x not in bad
        assert abs(info.frame_z - info.frame_x) <= 3
        assert magenta_fraction(z) < 0.05 and magenta_fraction(x) < 0.05


def test_real_absent_rows_are_invalid(shared_data):
    src = GOT10kSource(shared_data / "got10k", "train")
    names = [src.name(i) for i in range(len(src))]
    assert len(src) == 28
    total_absent = 0
    for name in ("UAV123_car14", "UAV123_group2_2", "UAV123_group3_2"):
        frames, boxes, valid = src.sequence(names.index(name))
        absence = np.loadtxt(shared_data / "got10k" / "train" / name / "absence.label")
        assert not valid[absence == 1].any()
        assert not valid[np.isnan(boxes).any(axis=1)].any()
        total_absent += int((absence == 1).sum())
    assert total_absent == 28


def test_mismatched_rows_and_missing_frames_are_reported(tmp_path):
    folder = write_got10k_folder(tmp_path, [small_seq(21, n=12, name="short")], "train") / "short"
    (folder / "00000005.jpg").unlink()                       # a missing frame in the middle
    with open(folder / "groundtruth.txt", "a") as fh:        # 2 rows more than frames
        fh.write("10,10,40,30\n10,10,40,30\n")
    src = GOT10kSource(tmp_path, "train")
    with pytest.warns(DataWarning) as record:
        rec = src.sequence(0)
    text = " ".join(str(w.message) for w in record)
    assert "short" in text and "frames 5, 13, 14" in text
    assert "absence.label has 12 rows for 14" in text
    assert len(rec.valid) == 14 and not rec.valid[[4, 12, 13]].any() and rec.valid[5]
    # frame 6 keeps its own box (matched by number, not shifted by the missing frame 5)
    np.testing.assert_allclose(rec.boxes[5], small_seq(21, n=12).boxes[5], atol=0.006)
    ds = quiet_dataset([src])
    for i in range(20):
        assert ds.sample(i)[2].frame_x not in (4, 12, 13)

    (tmp_path / "extra").mkdir()
    write_got10k_folder(tmp_path / "extra", [small_seq(22, n=6, name="long")], "val")
    cv2.imwrite(str(tmp_path / "extra" / "val" / "long" / "00000007.jpg"),
                np.zeros((120, 160, 3), np.uint8))
    with pytest.warns(DataWarning, match="beyond the 6 ground-truth rows"):
        GOT10kSource(tmp_path / "extra", "val").sequence(0)


def test_unreadable_image_is_reported_and_resampled(tmp_path):
    folder = write_got10k_folder(tmp_path, [small_seq(31, n=8, name="broken")], "train") / "broken"
    for k in (2, 3, 4, 5, 6):
        (folder / f"{k:08d}.jpg").write_bytes(b"not a jpeg")
    src = GOT10kSource(tmp_path, "train")
    ds = quiet_dataset([src], pairs_per_epoch=64)
    with pytest.warns(DataWarning, match=r"broken: frame \d \(.*\) could not be read"):
        infos = [ds.sample(i)[2] for i in range(30)]
    assert all(i.frame_z in (0, 6, 7) and i.frame_x in (0, 6, 7) for i in infos)
    assert max(i.attempts for i in infos) > 1
    # deterministic even with resampling
    assert [ds.sample(i)[2].frame_x for i in range(30)] == [i.frame_x for i in infos]


def test_unusable_first_frame_header_and_nothing_usable(tmp_path):
    folder = write_got10k_folder(tmp_path, [small_seq(41, n=4, name="s")], "train") / "s"
    (folder / "00000001.jpg").write_bytes(b"")
    with pytest.warns(DataWarning, match="header is unreadable"):
        rec = GOT10kSource(tmp_path, "train").sequence(0)
    assert rec.valid[1:].all()  # size taken from the next frame
    with pytest.raises(ValueError, match="no training data"):
        PairDataset([GOT10kSource(tmp_path, "train")], {"got10k": 0.0})
    with pytest.raises(ValueError, match="seed"):
        PairDataset([GOT10kSource(tmp_path, "train")], {"got10k": 1.0}, seed=-1)
    (folder / "cover.label").write_text("0\n" * 4)  # cover not annotated: ignored, reported
    with pytest.warns(DataWarning) as record:
        assert GOT10kSource(tmp_path, "train").sequence(0).valid[1:].all()
    assert any("cover.label has no positive value" in str(w.message) for w in record)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(DataWarning, match="no sequences found"):
        assert len(GOT10kSource(empty)) == 0


# ---------------------------------------------------------------------------------------------
# pairs


@pytest.fixture(scope="module")
def synth_dataset() -> PairDataset:
    cfg = DataConfig(synthetic=6, pairs_per_epoch=50, seed=7)
    return PairDataset.from_config(cfg, synthetic_frames=24)


def test_pair_shapes_dtypes_and_range(synth_dataset):
    assert len(synth_dataset) == 50
    z, x, target = synth_dataset[0]
    assert z.shape == (3, 127, 127) and x.shape == (3, 255, 255)
    _, _, info = synth_dataset.sample(0)
    centre = info.box_x[:2] + info.box_x[2:] / 2 - 127.5
    # [dx, dy, w, h]: the centre's offset from the search-crop centre, then the size (search pixels)
    assert target.shape == (4,) and np.allclose(target[:2].numpy(), centre, atol=1e-4)
    assert np.allclose(target[2:].numpy(), info.box_x[2:], atol=1e-4)
    assert z.dtype == torch.float32 and x.dtype == torch.float32
    assert z.is_contiguous() and x.is_contiguous()
    assert 0 <= float(z.min()) and float(x.max()) <= 255 and float(x.max()) > 1  # raw 0..255
    with pytest.raises(IndexError):
        synth_dataset[50]


def test_target_is_centred_in_search_crop():
    seq = SyntheticSource(3, seed=1, num_frames=24)
    ds = quiet_dataset([seq], stretch=0.0, shift=8, max_frame_gap=5)
    for i in range(12):
        z, x, info = ds.sample(i)
        # the target fills the same scale as the tracker's exemplar: target w,h * 127 / context
        cx = info.box_x[0] + info.box_x[2] / 2
        cy = info.box_x[1] + info.box_x[3] / 2
        assert abs(cx - 127.5) <= 8 and abs(cy - 127.5) <= 8
        assert abs(info.box_z[0] + info.box_z[2] / 2 - 63.5) < 1e-6
        # find the exemplar's target patch in the search image: it must be where box_x says
        tmpl = z[48:80, 48:80]
        res = cv2.matchTemplate(x, tmpl, cv2.TM_CCOEFF_NORMED)
        _, best, _, (px, py) = cv2.minMaxLoc(res)
        assert best > 0.5
        assert abs(px + 16 - cx) <= 3 and abs(py + 16 - cy) <= 3, (i, px, py, cx, cy)


def test_search_scale_jitter_resizes_the_target_in_the_search_crop_only():
    """``scale`` draws no extra numbers: the same pair with and without it differs only by the
    search crop's zoom ``exp(U(-scale, scale))``, the same for w and h; the exemplar is untouched."""
    seq = SyntheticSource(3, seed=2, num_frames=24)
    plain = quiet_dataset([seq], stretch=0.0, shift=16, scale=0.0)
    zoomed = quiet_dataset([seq], stretch=0.0, shift=16, scale=0.3)
    ratios = []
    for i in range(16):
        _, _, a = plain.sample(i)
        z, _, b = zoomed.sample(i)
        assert (a.frame_z, a.frame_x) == (b.frame_z, b.frame_x)
        assert np.allclose(a.box_z, b.box_z)
        rw, rh = b.box_x[2] / a.box_x[2], b.box_x[3] / a.box_x[3]
        assert rw == pytest.approx(rh, rel=1e-9)
        # the target centre still lands where the shift put it
        assert np.allclose(a.box_x[:2] + a.box_x[2:] / 2, b.box_x[:2] + b.box_x[2:] / 2)
        ratios.append(rw)
    assert np.exp(-0.3) - 1e-9 <= min(ratios) and max(ratios) <= np.exp(0.3) + 1e-9
    assert max(ratios) / min(ratios) > 1.2            # it does vary
    assert PairDataset.from_config(DataConfig(synthetic=2, scale=0.25), synthetic_frames=8).scale == 0.25


def test_negative_pairs_swap_only_the_exemplar_and_mark_the_target_absent():
    """``negative`` draws its numbers after the pair: the search crop is the one drawn without it,
    the exemplar is another sequence's target, and the item's target is ``[0, 0, 0, 0]``."""
    seqs = [SyntheticSource(4, seed=5, num_frames=16)]
    plain = quiet_dataset(seqs, stretch=0.0, shift=16)
    mixed = quiet_dataset(seqs, stretch=0.0, shift=16, negative=0.5)
    flags = []
    for i in range(24):
        za, xa, a = plain.sample(i)
        zb, xb, b = mixed.sample(i)
        assert np.array_equal(xa, xb) and (a.sequence, a.frame_x) == (b.sequence, b.frame_x)
        flags.append(b.negative)
        if b.negative:
            assert b.negative_from != b.sequence and not np.array_equal(za, zb)
            assert torch.equal(mixed[i][2], torch.zeros(4))
        else:
            assert np.array_equal(za, zb) and float(mixed[i][2][2]) > 0
    assert 4 <= sum(flags) <= 20  # about half, deterministically
    assert all(quiet_dataset(seqs, negative=1.0).sample(i)[2].negative for i in range(8))
    with pytest.raises(ValueError, match="probability"):
        quiet_dataset(seqs, negative=1.5)
    with pytest.raises(ValueError, match="probability"):
        DataConfig(negative=-0.1)
    with pytest.raises(ValueError, match="two sequences"):
        quiet_dataset([SyntheticSource(1, seed=5, num_frames=16)], negative=0.2)
    assert PairDataset.from_config(DataConfig(synthetic=2, negative=0.2), synthetic_frames=8).negative == 0.2


def test_pairs_are_deterministic_per_seed_epoch_index(synth_dataset):
    z1, x1, _ = synth_dataset[5]
    z2, x2, _ = synth_dataset[5]
    assert torch.equal(z1, z2) and torch.equal(x1, x2)
    again = PairDataset.from_config(DataConfig(synthetic=6, pairs_per_epoch=50, seed=7),
                                    synthetic_frames=24)
    assert torch.equal(again[5][1], x1)
    synth_dataset.set_epoch(1)
    try:
        z3, x3, _ = synth_dataset[5]
    finally:
        synth_dataset.set_epoch(0)
    assert not torch.equal(x1, x3)
    other_seed = PairDataset.from_config(DataConfig(synthetic=6, pairs_per_epoch=50, seed=8),
                                         synthetic_frames=24)
    assert not torch.equal(other_seed[5][1], x1)


def test_dataloader_workers_do_not_change_the_pairs(synth_dataset):
    from torch.utils.data import DataLoader, Subset
    sub = Subset(synth_dataset, range(6))
    plain = [b for b in DataLoader(sub, batch_size=3, num_workers=0)]
    with_workers = [b for b in DataLoader(sub, batch_size=3, num_workers=2)]
    for (za, xa, oa), (zb, xb, ob) in zip(plain, with_workers):
        assert torch.equal(oa, ob)
        assert torch.equal(za, zb) and torch.equal(xa, xb)


def test_weights_mix_source_kinds(got10k_root):
    cfg = DataConfig(got10k_roots=[str(got10k_root / "val")], synthetic=3, pairs_per_epoch=40,
                     weights={"got10k": 1.0, "synthetic": 0.0})
    ds = PairDataset.from_config(cfg, synthetic_frames=12)
    assert {ds.sample(i)[2].kind for i in range(20)} == {"got10k"}
    cfg.weights = {"got10k": 1.0, "synthetic": 1.0}
    ds = PairDataset.from_config(cfg, synthetic_frames=12)
    kinds = [ds.sample(i)[2].kind for i in range(40)]
    assert 8 < kinds.count("synthetic") < 32
    stats = ds.stats()
    assert stats["got10k"]["sequences"] == 2 and stats["synthetic"]["usable_frames"] > 0


def test_gray_and_colour_options(synth_dataset):
    ds = PairDataset(synth_dataset.sources, {"synthetic": 1.0}, pairs_per_epoch=4, gray_prob=1.0,
                     color=0.2)
    z, x, _ = ds.sample(0)
    assert np.array_equal(z[..., 0], z[..., 1]) and np.array_equal(x[..., 1], x[..., 2])


# ---------------------------------------------------------------------------------------------
# real shared data


def test_real_image_sizes_match_meta_resolution(shared_data):
    from siamtrack.data.sources import image_size, parse_resolution, read_meta
    for subset in ("train", "val"):
        for d in sorted((shared_data / "got10k" / subset).iterdir()):
            if not d.is_dir():
                continue
            meta = parse_resolution(read_meta(d / "meta_info.ini").get("resolution"))
            header = image_size(d / "00000001.jpg")
            decoded = cv2.imread(str(d / "00000001.jpg")).shape
            assert header == meta == (decoded[1], decoded[0]), d.name


def test_real_sources_give_pairs(shared_data):
    cfg = DataConfig(got10k_roots=[str(shared_data / "got10k")],
                     photos=[str(shared_data / "photos" / "boxes.json")], pairs_per_epoch=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # the shared data has no broken files
        ds = PairDataset.from_config(cfg)
        stats = ds.stats()
        assert stats["got10k"]["sequences"] == 28 and stats["got10k"]["usable_frames"] > 1000
        assert stats["photos"]["usable_frames"] > 500
        kinds = set()
        for i in range(8):
            z, x, info = ds.sample(i)
            kinds.add(info.kind)
            assert z.shape == (127, 127, 3) and x.shape == (255, 255, 3)
        val = GOT10kSource(shared_data / "got10k" / "val")
        assert len(val) == 8 and all(val.sequence(i).valid.any() for i in range(8))
    assert kinds == {"got10k", "photos"}


# ---------------------------------------------------------------------------------------------
# frame-pair selection (property test, no images)


@settings(max_examples=60, deadline=None)
@given(valid=st.lists(st.booleans(), min_size=1, max_size=60).filter(any),
       gap=st.integers(-1, 10), seed=st.integers(0, 2**16))
def test_pick_frames_respects_validity_and_gap(valid, gap, seed):
    ds = PairDataset.__new__(PairDataset)  # only the frame picker is exercised
    ds.max_frame_gap = gap
    usable = np.flatnonzero(valid)
    z, x = ds._pick_frames(usable, np.random.default_rng(seed))
    assert valid[z] and valid[x]
    if gap > 0:
        assert abs(z - x) <= gap
        others = [k for k in usable if k != z and abs(k - z) <= gap]
    else:
        others = [k for k in usable if k != z]
    assert (z != x) == bool(others)
