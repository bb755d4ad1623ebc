"""Issue 26, the first page: the README stays a short first page whose commands, links and
figures agree with the code (a figure that disagrees with a default is how a newcomer gets lost)."""
from __future__ import annotations

import re
from pathlib import Path

from siamtrack.config import TrackerConfig
from siamtrack.tracking.threads import DEFAULT_THREADS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_is_a_first_page_with_the_two_commands_on_top():
    lines = README.splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail to docs/"
    block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert block[0].endswith("pip install -e '.[dev]' && siamtrack demo") and block[1] == "python -m pytest -q"
    assert README.index("```bash") < 40


def test_every_relative_link_of_the_readme_and_docs_exists():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_readme_speed_claims_name_the_default_thread_count():
    # every "ms per frame" claim must be at the threads the API and the CLI actually use
    for claim in re.findall(r"ms per frame \((\d+) threads?\)", README):
        assert int(claim) == DEFAULT_THREADS
    assert "2 CPU threads" not in README


def test_confidence_docs_name_every_feature_and_the_refit_command():
    from siamtrack.tracking.confidence import FEATURES

    tracking = (ROOT / "docs" / "TRACKING.md").read_text(encoding="utf-8")
    assert len(TrackerConfig().conf_weights) == len(FEATURES) + 1
    for words in ("peak-to-sidelobe", "z-score", "relative to the first frame", "cosine similarity",
                  "central half", "jump", "area", "conf_smoothing", "experiments/confidence_fit.py"):
        assert words in tracking, f"docs/TRACKING.md does not describe {words!r}"


def test_named_weights_search_list_is_the_code_s():
    from siamtrack.weights import INSTALLED_WEIGHTS

    tracking = (ROOT / "docs" / "TRACKING.md").read_text(encoding="utf-8")
    listed = tracking.split("Named weights are looked up in", 1)[1].split("`siamtrack.weights", 1)[0]
    for where in ("$SIAMTRACK_WEIGHTS", "weights/", "/".join(INSTALLED_WEIGHTS.parts), "./weights"):
        assert where in listed, f"the named-weights search list leaves out {where}"


def test_gitignore_covers_the_readme_outputs():
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    for pattern in ("*_tracked.mp4", "*_boxes.txt", "siamtrack_demo/"):
        assert pattern in ignored
