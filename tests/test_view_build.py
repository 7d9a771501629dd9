"""The run viewer built from a hand-made run with known advantages: heat-map cells, filtered
groups, escaping, turn counts, token view, eval outcomes, damaged input and incremental builds."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from inboxrl.agent.trajectory import load_jsonl
from inboxrl.view.build import ViewError, ViewSettings, build_view

from _view_util import ADVANTAGES, SCRIPT_BODY, make_handmade_run, parse, rollout_section

SERIAL = ViewSettings(workers=1)


@pytest.fixture()
def run(tmp_path):
    root = make_handmade_run(tmp_path / "run")
    report = build_view(root, SERIAL)
    return root, report


def read(root: Path, rel: str) -> str:
    return (root / "view" / rel).read_text(encoding="utf-8")


def test_heat_map_cells_are_the_advantages_of_the_step_file(run):
    root, _ = run
    tables = parse(read(root, "steps/step_0001.html")).heat
    assert set(tables) == set(ADVANTAGES)
    for g, rows in ADVANTAGES.items():
        assert [[float(a["data-adv"]) for a, _ in row] for row in tables[g]] == rows
        assert [[text.split("pr")[0] for _, text in row] for row in tables[g]] == \
            [[f"{a:+.3f}" for a in row] for row in rows]
    # the same numbers as the file on disk, read back by the project's own loader
    by = {(t.group_id, t.rollout_index): [turn.advantage if t.kept else 0.0 for turn in t.turns]
          for t in load_jsonl(root / "trajectories" / "step_0001.jsonl")}
    for g, rows in tables.items():
        for r, row in enumerate(rows):
            assert [float(a["data-adv"]) for a, _ in row] == by[(g, r)]


def test_filtered_groups_are_shown_filtered_with_zero_advantages(run):
    root, _ = run
    html = read(root, "steps/step_0001.html")
    cells = parse(html).heat[1]
    assert all("filtered" in a["class"] and float(a["data-adv"]) == 0.0 for row in cells for a, _ in row)
    assert all("filtered" not in a["class"] for row in parse(html).heat[0] for a, _ in row)
    group1 = html[html.index('id="group-1"'):]
    assert "filtered (low variance)" in group1[:600]
    # group 1: rewards 0.0, 0.0 (std 0); process rewards +1, -1, +1 (turns 1-2 of r0, turn 1 of r1):
    # the page states the measured values against the run's rule, whichever side they fall
    assert ("Filtered: reward std 0.000 &lt; min_group_std 0.05 and process-reward std 0.943 ≥ 0.05."
            in group1)
    # colour: red for negative, blue for positive, grey for filtered
    colours = {float(a["data-adv"]): a["style"] for row in parse(html).heat[0] for a, _ in row}
    r, _, b = (int(colours[1.75][12 + 2 * i: 14 + 2 * i], 16) for i in range(3))
    assert b > r
    r, _, b = (int(colours[-1.125][12 + 2 * i: 14 + 2 * i], 16) for i in range(3))
    assert r > b


def test_model_and_email_text_is_escaped(run):
    root, _ = run
    page = read(root, "rollouts/step_0001/g000.html")
    assert "<script>" not in page and "<i>raw</i>" not in page and "<b>not bold</b>" not in page
    assert "&lt;script&gt;" in page and "&lt;i&gt;raw&lt;/i&gt;" in page
    step = read(root, "steps/step_0001.html")
    assert "<b>not bold</b>" not in step and "&lt;b&gt;not bold&lt;/b&gt;" in step
    for p in (root / "view").rglob("*.html"):
        assert "<script" not in p.read_text(encoding="utf-8"), p  # the pages run no script at all


def test_rollout_page_shows_each_turn_and_each_model_token(run):
    root, _ = run
    for (g, r), advs in {(0, 0): ADVANTAGES[0][0], (0, 1): ADVANTAGES[0][1], (1, 0): ADVANTAGES[1][0]}.items():
        page = rollout_section(read(root, f"rollouts/step_0001/g{g:03d}.html"), r)
        counts = parse(page).counts
        assert counts["turn"] == len(advs)
        assert f"Conversation ({len(advs)} turn" in page
        assert f'id="r{r:02d}-turn-{len(advs)}"' in page
        n_model = sum(2 + (i + r) % 2 for i in range(len(advs)))
        assert counts["src-model"] == n_model + 1  # + the legend's swatch
        titles = re.findall(r'class="tok src-model" title="turn (\d+) · log-prob (\S+) · advantage (\S+)"', page)
        assert len(titles) == n_model
        assert {float(a) for _, _, a in titles} == set(advs)
        assert titles[0][1] == "-0.5000"
    page = rollout_section(read(root, "rollouts/step_0001/g000.html"), 0)
    assert "unparseable: no JSON object found" in page  # turn 2's parse error
    assert '&#34;name&#34;: &#34;read_email&#34;' in page  # turn 1's parsed call, as JSON
    assert "read_reference" in page and "format_error" in page


def test_eval_page_compares_each_scenario_with_the_baseline(run):
    root, report = run
    page = read(root, "evals/eval_0002.html")
    outcomes = dict(re.findall(r"<code>(\w+)</code>.*?<td class=\"outcome\">([\w ]+)</td>", page, re.S))
    assert outcomes == {"a": "won", "b": "tie", "c": "lost"}
    links = re.findall(r'href="(\.\./rollouts/[^"]+)"', page)
    assert len(links) == 6  # this eval's and the baseline's transcript of each scenario
    for link in links:
        assert (root / "view" / "evals" / link).resolve().is_file(), link
    base = read(root, "evals/eval_0000.html")
    assert "This eval is the baseline" in base and 'class="baseline"' not in base
    assert set(re.findall(r'<td class="outcome">([^<]*)</td>', base)) == {"-"}
    side = read(root, "evals.html")
    assert "Detailed Rubric Statistics" in side and "step 0" in side and "step 2" in side
    assert side.count("Found correct email") == 1 and report.evals == 2


def test_damaged_input_is_built_and_reported(run):
    root, report = run
    notes = "\n".join(report.notes)
    assert "step_0002.jsonl: skipped 1 line" in notes
    assert "metrics.jsonl: skipped 1 line" in notes
    assert report.steps == 2 and report.rollouts == 2 * 5 + 2 * 3
    index = read(root, "index.html")
    assert "Skipped or missing" in index and "step_0002.jsonl" in index


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v:
                self.targets.append(v)


def test_every_link_and_image_is_a_local_file(run):
    root, _ = run
    pages = list((root / "view").rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        parser = Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for target in parser.targets:
            assert "://" not in target and not target.startswith("//"), (page, target)  # no network
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            assert dest.is_file(), (page, target)
            if anchor:
                assert f'id="{anchor}"' in dest.read_text(encoding="utf-8"), (page, target)


def test_partial_and_empty_output_dirs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    report = build_view(empty, SERIAL)
    assert report.index.is_file() and report.steps == 0
    assert any("metrics.jsonl: missing" in n for n in report.notes)
    killed = make_handmade_run(tmp_path / "killed")
    (killed / "eval_logs" / "eval_step_0002.json").write_text('{"step": 2, "accur')  # killed mid-write
    (killed / "config.json").write_text("[1, 2]")
    (killed / "trajectories" / "step_0003.jsonl").write_text('{"scenario_id": 1}\n')
    report = build_view(killed, SERIAL)
    notes = "\n".join(report.notes)
    assert "eval_step_0002.json: skipped" in notes and "config.json: skipped" in notes
    assert "step_0003.jsonl: skipped 1 row" in notes
    assert report.steps == 2 and report.evals == 1
    with pytest.raises(ViewError, match="not found"):
        build_view(tmp_path / "nope", SERIAL)


def test_other_viewer_code_rebuilds_every_page(run, monkeypatch):
    root, _ = run
    import inboxrl.view.build as build

    assert build_view(root, SERIAL).reused == 4
    monkeypatch.setattr(build, "code_digest", lambda: "another version")
    again = build_view(root, SERIAL)
    assert again.reused == 0 and again.steps == 2 and again.evals == 2


def test_a_rebuild_reuses_unchanged_steps_and_rebuilds_changed_ones(run):
    root, first = run
    assert first.reused == 0
    again = build_view(root, SERIAL)
    assert again.reused == 4 and again.rollouts == 0 and again.steps == 2
    assert again.notes == first.notes  # a reused step's skips are still reported
    traj = load_jsonl(root / "trajectories" / "step_0001.jsonl")
    traj[0].turns[0].advantage = 0.3125
    from inboxrl.agent.trajectory import save_jsonl

    save_jsonl(traj, root / "trajectories" / "step_0001.jsonl")
    third = build_view(root, SERIAL)
    assert third.reused == 3 and third.rollouts == 5
    assert float(parse(read(root, "steps/step_0001.html")).heat[0][0][0][0]["data-adv"]) == 0.3125


def test_parallel_build_writes_the_same_pages(tmp_path):
    a, b = make_handmade_run(tmp_path / "a" / "run"), make_handmade_run(tmp_path / "b" / "run")
    build_view(a, SERIAL)
    build_view(b, ViewSettings(workers=2))
    pages = sorted(p.relative_to(a / "view") for p in (a / "view").rglob("*.html"))
    assert pages == sorted(p.relative_to(b / "view") for p in (b / "view").rglob("*.html"))
    strip = lambda s: re.sub(r"Built by .*?</footer>", "", s.replace(str(a), "").replace(str(b), ""), flags=re.S)  # noqa: E731
    for rel in pages:
        assert strip((a / "view" / rel).read_text()) == strip((b / "view" / rel).read_text()), rel
    assert json.loads((b / "view" / "manifest.json").read_text())["version"] == 2
    assert SCRIPT_BODY  # used by the fixture run


def test_without_a_tokenizer_the_token_view_shows_ids_and_says_why(run):
    root, report = run
    assert any(n.startswith("token view: no tokenizer found") for n in report.notes)
    page = rollout_section(read(root, "rollouts/step_0001/g000.html"), 0)
    assert '<span class="tok src-system" title="system: 3 tokens">#1 #2 #3 </span>' in page
    assert re.search(r'class="tok src-model" title="turn 1 · log-prob -0.5000 · advantage \+0.5000">#10 </span>', page)


def test_a_rollout_without_tokens_says_so(tmp_path):
    from inboxrl.agent.trajectory import save_jsonl

    from _view_util import step_trajectories

    root = make_handmade_run(tmp_path / "run", truncate=False)
    trajs = step_trajectories(1)
    for t in trajs:  # as an API policy records them: turns and messages, no token ids
        t.token_ids, t.sources, t.logprobs, t.turn_index = [], [], [], []
    save_jsonl(trajs, root / "trajectories" / "step_0001.jsonl")
    build_view(root, SERIAL)
    page = read(root, "rollouts/step_0001/g000.html")
    assert page.count("No tokens recorded") == len(ADVANTAGES[0])
    assert [[float(a["data-adv"]) for a, _ in row] for row in parse(read(root, "steps/step_0001.html")).heat[0]] \
        == ADVANTAGES[0]


def test_a_configured_baseline_file_is_the_baseline(tmp_path):
    root = make_handmade_run(tmp_path / "run", truncate=False)
    (root / "eval_logs" / "baseline_eval.json").unlink()
    (root / "eval_logs" / "eval_step_0000.json").unlink()
    (root / "eval_logs" / "eval_step_0000_trajectories.jsonl").unlink()
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"a": 2.0, "b": 0.5, "c": -3.0}))
    (root / "config.json").write_text(json.dumps({"baseline_file": str(base)}))
    build_view(root, SERIAL)
    page = read(root, "evals/eval_0002.html")
    outcomes = dict(re.findall(r"<code>(\w+)</code>.*?<td class=\"outcome\">([\w ]+)</td>", page, re.S))
    assert outcomes == {"a": "lost", "b": "tie", "c": "won"}
    assert 'class="baseline"' not in page  # no baseline transcripts in this run
    (root / "config.json").write_text(json.dumps({"baseline_file": str(tmp_path / "gone.json")}))
    report = build_view(root, SERIAL)
    assert any(n.startswith(f"baseline_file {tmp_path / 'gone.json'}: not read") for n in report.notes)
