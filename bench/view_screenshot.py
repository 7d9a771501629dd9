"""The README's screenshot of the run viewer's step page (docs/img/view_step.png).

Fabricates a small run with ``bench/view_scale.py`` (real tokenizer ids, advantages from the
project's ``assign_advantages``), builds the viewer and has headless Chromium screenshot the
first step page.

    python bench/view_screenshot.py                      # writes docs/img/view_step.png
    python bench/view_screenshot.py --out /tmp/step.png
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from view_scale import fabricate_run

from inboxrl.view.build import ViewSettings, build_view

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "img" / "view_step.png"))
    ap.add_argument("--size", default="1480,1300", help="window width,height")
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("error: headless Chromium not found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="view_shot_") as tmp:
        root = fabricate_run(Path(tmp) / "grpo_masked", steps=3, groups=4, group_size=6, eval_every=2, eval_size=8)
        build_view(root, ViewSettings(workers=1))
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        page = root / "view" / "steps" / "step_0002.html"
        subprocess.run([browser, *FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}", f"--window-size={args.size}",
                        f"--screenshot={out}", page.as_uri()], check=True, capture_output=True, timeout=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
