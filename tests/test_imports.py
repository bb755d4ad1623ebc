"""Issue 26, fast without tuning: what a start imports. Each check runs in a fresh interpreter,
since ``sys.modules`` of the test process holds whatever earlier tests imported."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)


def loaded_after(code: str, names: tuple[str, ...]) -> list[str]:
    proc = run_python(f"{code}\nimport sys\nprint(sorted(n for n in {names!r} if n in sys.modules))")
    assert proc.returncode == 0, proc.stderr
    return eval(proc.stdout.strip().splitlines()[-1])


def test_the_opencv_wrapper_imports_no_torchvision_matplotlib_or_got10k():
    heavy = ("torchvision", "matplotlib", "got10k", "torch")
    assert loaded_after("from siamtrack.tracking.opencv_api import TrackerSiamFC", heavy) == ["torch"]
    assert loaded_after("from siamtrack import SiamFCTracker; SiamFCTracker.from_pretrained('student')",
                        heavy) == ["torch"]


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["track", "--help"], ["track", "v.mp4", "--bogus"],
                                  ["track", "v.mp4", "--box", "1,2"], ["speed", "--threads", "x"]])
def test_version_help_and_argument_errors_answer_without_torch(argv):
    code = f"from siamtrack.cli import main\ntry:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code"
    assert loaded_after(code, ("torch", "got10k", "matplotlib")) == []


def test_siamtrack_root_exports_apply_threads_lazily():
    assert loaded_after("import siamtrack\nassert callable(siamtrack.apply_threads)", ("torch",)) == []


@pytest.mark.parametrize("order", ["siamtrack first", "got10k first"])
def test_trackers_are_got10k_trackers_whatever_is_imported_first(order):
    first, second = ("from siamtrack.tracking.tracker import SiamFCTracker as T",
                     "from got10k.trackers import Tracker")
    if order == "got10k first":
        first, second = second, first
    proc = run_python(f"{first}\nimport sys\nprint('got10k' in sys.modules)\n{second}\n"
                      "from siamtrack.evaluation.baselines import OpenCVTracker\n"
                      "print(issubclass(T, Tracker), issubclass(OpenCVTracker, Tracker))")
    assert proc.returncode == 0, proc.stderr
    loaded, subclasses = proc.stdout.split("\n")[:2]
    assert loaded == str(order == "got10k first") and subclasses == "True True"


def test_track_matches_got10k_s_own_loop(tmp_path):
    import cv2
    from got10k.trackers import Tracker as Got10kTracker

    from siamtrack.tracking.base import TrackerBase

    class Drift(TrackerBase):
        def init(self, image, box):
            self.box, self.shape = np.asarray(box, float), np.asarray(image).shape

        def update(self, image):
            self.box = self.box + [1, 2, 0, 0]
            assert np.asarray(image).shape == self.shape and image.mode == "RGB"
            return self.box

    files = []
    for i in range(4):
        files.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(files[-1], np.full((20, 30), 60 * i, np.uint8))  # grayscale: converted to RGB
    tracker = Drift("drift")
    ours, ours_t = tracker.track(files, [1, 2, 3, 4])
    theirs, theirs_t = Got10kTracker.track(tracker, files, [1, 2, 3, 4])
    assert np.array_equal(ours, theirs) and ours[-1].tolist() == [4, 8, 3, 4]
    assert ours_t.shape == theirs_t.shape == (4,)
