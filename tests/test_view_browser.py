"""The run viewer in a real browser: headless Chromium opens the pages from disk (file://),
the test reads the rendered DOM (``--dump-dom``) and a screenshot, and Chromium's log shows no
JavaScript console message. Skipped, with the reason, when Chromium is not installed."""
from __future__ import annotations

import html as htmllib
import re

import numpy as np
import pytest

from inboxrl.view.build import ViewSettings, build_view

from _view_util import ADVANTAGES, console_messages, make_handmade_run, parse, rollout_section, run_chromium


@pytest.fixture(scope="module")
def view(tmp_path_factory):
    root = make_handmade_run(tmp_path_factory.mktemp("browser") / "run")
    build_view(root, ViewSettings(workers=1))
    return root / "view", tmp_path_factory.mktemp("profile")


def dump_dom(page, profile):
    proc = run_chromium(page, profile, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    return proc.stdout


def test_the_console_check_catches_a_script_error(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    proc = run_chromium(bad, tmp_path / "profile", "--dump-dom")
    assert any("undefinedFunction" in line for line in console_messages(proc.stderr))


def test_index_page_in_the_browser(view):
    view_dir, profile = view
    dom = dump_dom(view_dir / "index.html", profile)
    assert re.search(r'<table class="data" id="step-table">.*?</table>', dom, re.S)
    steps = re.findall(r'<a href="steps/step_(\d+)\.html">\d+</a>', dom)
    assert steps == ["0001", "0002"]
    assert dom.count('<img class="plot"') >= 5
    assert "Skipped or missing" in dom  # the truncated lines of the hand-made run


def test_step_page_in_the_browser(view):
    view_dir, profile = view
    dom = dump_dom(view_dir / "steps" / "step_0001.html", profile)
    heat = parse(dom).heat
    assert {g: [[float(a["data-adv"]) for a, _ in row] for row in rows] for g, rows in heat.items()} == ADVANTAGES
    assert "Group Summary" in dom and "filtered (low variance)" in dom


def test_rollout_page_in_the_browser(view):
    view_dir, profile = view
    page = view_dir / "rollouts" / "step_0001" / "g000.html"
    dom = dump_dom(page, profile)
    assert parse(dom).counts["rollout"] == len(ADVANTAGES[0])
    for r, advs in enumerate(ADVANTAGES[0]):
        assert parse(rollout_section(dom, r)).counts["turn"] == len(advs)
    assert "<script" not in dom  # the email body's <script> is text, not an element
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    results = [htmllib.unescape(m) for m in re.findall(r'<pre class="tool-result">(.*?)</pre>', dom, re.S)]
    assert '<script>document.title=\\"pwned\\"</script>' in results[0]


def test_step_page_screenshot_is_not_blank(view, tmp_path):
    view_dir, profile = view
    png = tmp_path / "step.png"
    proc = run_chromium(view_dir / "steps" / "step_0001.html", profile, f"--screenshot={png}",
                        "--window-size=1200,900")
    assert proc.returncode == 0 and png.is_file(), proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    assert pixels.shape[:2] == (900, 1200)
    assert float(np.std(pixels)) > 0.05
    colours = {tuple(c) for c in (pixels.reshape(-1, 3)[::97] * 255).astype(int).tolist()}
    assert len(colours) > 20  # text, tables and heat-map colours, not a flat page
