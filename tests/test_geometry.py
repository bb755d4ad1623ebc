"""siamtrack.geometry: crops land where the box conventions say, IoU and box conversions."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from siamtrack.geometry import (box_to_center, context_size, crop_square,
                                         crop_squares, hann_window, iou)


def center_to_box(cbox) -> np.ndarray:
    """``[cx, cy, w, h]`` -> ``[x, y, w, h]`` (the inverse of ``box_to_center``; only tests need it)."""
    cx, cy, w, h = (float(v) for v in cbox)
    return np.array([cx - w / 2.0, cy - h / 2.0, w, h], dtype=np.float64)


def gradient_image(h: int = 120, w: int = 160) -> np.ndarray:
    """Every pixel's value tells where it came from: R = column, G = row, B = constant."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx, yy, np.full_like(xx, 7)], axis=2).astype(np.uint8)


def test_crop_of_a_region_at_scale_one_is_that_region() -> None:
    img = np.random.default_rng(0).integers(0, 256, size=(100, 120, 3), dtype=np.uint8)
    # the square [30, 70) x [20, 60) has centre (50, 40) in continuous pixels
    crop = crop_square(img, (50.0, 40.0), 40, 40)
    np.testing.assert_array_equal(crop, img[20:60, 30:70])


def test_downscaled_crop_equals_the_region_resized() -> None:
    rng = np.random.default_rng(1)
    img = cv2.resize(rng.integers(0, 256, size=(30, 40, 3)).astype(np.uint8), (160, 120),
                     interpolation=cv2.INTER_CUBIC)
    crop = crop_square(img, (80.0, 60.0), 64, 32)          # region [48, 112) x [28, 92), halved
    region = img[28:92, 48:112].astype(np.float32)
    expected = region.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))  # 2x2 average = pixel-centre sampling
    assert np.abs(crop.astype(np.float32) - expected).max() <= 1.0


def test_crop_centre_lands_on_the_requested_point() -> None:
    img = gradient_image()
    for cx, cy in [(40.5, 30.5), (100.5, 70.5), (81.0, 61.0)]:
        crop = crop_square(img, (cx, cy), 21, 21).astype(np.float64)
        # the centre output pixel samples source point (cx, cy): value = coordinate - 0.5
        assert crop[10, 10, 0] == pytest.approx(cx - 0.5, abs=0.51)
        assert crop[10, 10, 1] == pytest.approx(cy - 0.5, abs=0.51)
    # a 2x upsampled crop keeps the centre and halves the step
    crop = crop_square(img, (80.0, 60.0), 20, 40).astype(np.float64)
    assert np.diff(crop[20, 5:35, 0]).mean() == pytest.approx(0.5, abs=0.05)


def test_border_is_filled_with_the_given_colour() -> None:
    img = np.full((50, 50, 3), 200, np.uint8)
    crop = crop_square(img, (0.0, 0.0), 50, 50, border_value=(10, 20, 30))
    # the top-left quadrant lies outside the image
    np.testing.assert_array_equal(crop[:20, :20], np.broadcast_to([10, 20, 30], (20, 20, 3)))
    np.testing.assert_array_equal(crop[30:, 30:], np.full((20, 20, 3), 200, np.uint8))
    default = crop_square(np.dstack([np.zeros((10, 10))] * 2 + [np.full((10, 10), 90.0)]).astype(np.uint8),
                          (0.0, 0.0), 20, 20)  # default border: the mean colour
    np.testing.assert_array_equal(default[0, 0], [0, 0, 90])
    with pytest.raises(ValueError):
        crop_square(img, (10, 10), 0, 20)


@pytest.mark.parametrize("center, size", [((330.0, 220.0), 300.0), ((10.0, 470.0), 400.0),
                                          ((100.5, 50.3), 60.7), ((0.0, 0.0), 3.0),
                                          ((640.0, 480.0), 2000.0), ((639.9, 0.1), 1.0)])
def test_batched_planar_crops_match_single_crops(center, size) -> None:
    # inside, straddling a corner, smaller than a pixel, far larger than the frame
    rng = np.random.default_rng(2)
    img = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    sizes = size * 1.0375 ** np.array([-1.0, 0.0, 1.0])
    batch = crop_squares(img, center, sizes, 64, border_value=(1, 2, 3))
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == np.uint8 and batch.flags.c_contiguous
    for k, s in enumerate(sizes):
        single = crop_square(img, center, s, 64, border_value=(1, 2, 3)).transpose(2, 0, 1)
        diff = np.abs(batch[k].astype(int) - single)
        # OpenCV's fixed-point coordinates may round the other way from the region's origin
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_batched_crops_border_and_bad_input() -> None:
    img = np.full((50, 50, 3), 200, np.uint8)
    batch = crop_squares(img, (0.0, 0.0), [50.0], 50, border_value=(10, 20, 30))
    np.testing.assert_array_equal(batch[0, :, :20, :20], np.broadcast_to([[[10]], [[20]], [[30]]], (3, 20, 20)))
    np.testing.assert_array_equal(batch[0, :, 30:, 30:], np.full((3, 20, 20), 200, np.uint8))
    with pytest.raises(ValueError, match="positive"):
        crop_squares(img, (10, 10), [20.0, 0.0], 20)
    with pytest.raises(ValueError, match="RGB uint8"):
        crop_squares(img.astype(np.float32), (10, 10), [20.0], 20)


def test_iou_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 0, 0]], float)
    np.testing.assert_allclose(iou(a, b), [1.0, 50 / 150, 0.0, 0.0])
    assert iou([1, 2, 3, 4], [1, 2, 3, 4])[0] == pytest.approx(1.0)


def test_box_centre_round_trip_and_context() -> None:
    rng = np.random.default_rng(2)
    for box in rng.uniform(0, 100, size=(20, 4)):
        c = box_to_center(box)
        assert c[0] == pytest.approx(box[0] + box[2] / 2) and c[1] == pytest.approx(box[1] + box[3] / 2)
        np.testing.assert_allclose(center_to_box(c), box, atol=1e-9)
    # SiamFC: a 40x30 target with context 0.5 gets a sqrt(75 * 65) exemplar square
    assert context_size(40, 30, 0.5) == pytest.approx(np.sqrt(75 * 65))


def test_hann_window_is_normalised_and_peaks_in_the_middle() -> None:
    w = hann_window(17)
    assert w.shape == (17, 17) and w.sum() == pytest.approx(1.0)
    assert np.unravel_index(w.argmax(), w.shape) == (8, 8)
    np.testing.assert_allclose(w, w.T)


@pytest.mark.parametrize("offset", [0.0, 4.0])
def test_response_cell_inverts_peak_displacement(offset: float) -> None:
    """The appearance term reads the search features where the tracker moved to: the position of a
    displacement is the cell :func:`peak_displacement` maps there (fractional between cells), clipped."""
    from siamtrack.geometry import peak_displacement, response_cell

    side, stride, crop_px, instance, up = 25, 8, 300.0, 255, 16
    for row, col in [(0, 0), (12, 12), (3, 20), (24, 7)]:
        disp = peak_displacement(row, col, side, stride, 1, offset, crop_px, instance)
        assert response_cell(disp, side, stride, offset, crop_px, instance) == pytest.approx((row, col))
        # an upsampled peak lands between cells: pixel centre (i + 0.5) / up - 0.5 of the coarse map
        fine = peak_displacement(row * up + 7, col * up + 9, side * up, stride, up, offset, crop_px, instance)
        expected = (np.clip((row * up + 7.5) / up - 0.5, 0, side - 1), np.clip((col * up + 9.5) / up - 0.5, 0, side - 1))
        assert response_cell(fine, side, stride, offset, crop_px, instance) == pytest.approx(expected)
    assert response_cell(np.array([1e6, -1e6]), side, stride, offset, crop_px, instance) == (0.0, side - 1.0)
    assert response_cell(np.array([np.nan, 0.0]), side, stride, offset, crop_px, instance)[1] == (side - 1) / 2


@pytest.mark.parametrize("size,factor", [(17, 16), (21, 8), (25, 16), (5, 3)])
def test_upsample_response_is_opencvs_bicubic_resize(size: int, factor: int) -> None:
    """The tracker's matrix form of the upsampling gives OpenCV's INTER_CUBIC values and peak."""
    from siamtrack.geometry import upsample_response

    rng = np.random.default_rng(size)
    yy, xx = np.mgrid[0:size, 0:size]
    blob = 7 * np.exp(-((yy - size / 3) ** 2 + (xx - size * 0.6) ** 2) / size)  # a peak off the grid's symmetry
    for response in (rng.normal(0, 2, (size, size)), blob):
        response = response.astype(np.float32)
        side = size * factor
        expected = cv2.resize(response, (side, side), interpolation=cv2.INTER_CUBIC)
        got = upsample_response(response, factor)
        assert got.shape == (side, side) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert int(got.argmax()) == int(expected.argmax())
    with pytest.raises(ValueError, match="square"):
        upsample_response(np.zeros((3, 4), np.float32), 8)
