"""siamtrack.io: frame sources yield RGB in order with fps / count; the writer draws and round-trips."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from siamtrack.io import (AnnotatedVideoWriter, ImageFolderSource, VideoFileSource, draw_box,
                          open_source)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def solid(rgb: tuple[int, int, int], h: int = 48, w: int = 64) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


def test_image_folder_is_rgb_in_natural_order(tmp_path) -> None:
    for name, rgb in [("1.png", RED), ("10.bmp", BLUE), ("2.JPG", GREEN)]:
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(solid(rgb), cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_source(str(tmp_path))
    assert isinstance(source, ImageFolderSource) and source.frame_count == 3 and source.fps is None
    frames = list(source)
    assert [tuple(int(v) for v in f[0, 0]) for f in frames[::2]] == [RED, BLUE]
    assert np.abs(frames[1][0, 0].astype(int) - GREEN).max() < 8  # JPEG


def test_video_file_reports_fps_count_and_rgb(tmp_path) -> None:
    path = tmp_path / "red.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12.0, (64, 48))
    for _ in range(5):
        writer.write(cv2.cvtColor(solid(RED), cv2.COLOR_RGB2BGR))
    writer.release()
    with open_source(path) as source:
        assert isinstance(source, VideoFileSource) and source.name == "red"
        assert source.frame_count == 5 and source.fps == pytest.approx(12.0)
        frames = list(source)
    assert len(frames) == 5 and frames[0].dtype == np.uint8 and frames[0].shape == (48, 64, 3)
    r, g, b = frames[2][24, 32].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_source_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such video"):
        open_source(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="no images"):
        open_source(tmp_path)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(ValueError, match="cannot open video"):
        open_source(bad)


def test_writer_draws_box_on_rgb_frames(tmp_path) -> None:
    frame = solid((40, 40, 40), 96, 128)
    drawn = draw_box(frame, [20, 30, 50, 40], score=0.87, label="SiamFC")
    assert np.array_equal(frame, solid((40, 40, 40), 96, 128))  # input untouched
    assert tuple(drawn[50, 20]) == (0, 255, 0)  # left edge of the box, green in RGB
    path = tmp_path / "sub" / "out.mp4"
    with AnnotatedVideoWriter(path, fps=10) as writer:
        writer.write(frame, [20, 30, 50, 40], score=0.5)
        writer.write(solid((40, 40, 40), 48, 64), None)  # another size is resized to the first
    assert writer.frames_written == 2
    cap = cv2.VideoCapture(str(path))
    ok, bgr = cap.read()
    cap.release()
    assert ok and bgr.shape == (96, 128, 3)
    b, g, r = bgr[50, 20:23].mean(axis=0)
    assert g > 150 and r < 100 and b < 100
