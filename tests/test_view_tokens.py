"""The token view's text: the Rust fast path decodes exactly as the tokenizer does, long runs
are cached, and each model token's hover text carries its own log-prob and advantage."""
from __future__ import annotations

import re

from inboxrl.agent.trajectory import Trajectory, Turn
from inboxrl.policy.tiny import default_tokenizer
from inboxrl.view.tokens import CACHE_MIN_RUN, TokenText, token_view_html


def test_fast_decode_equals_the_tokenizer():
    tok = default_tokenizer()
    text = TokenText(tok)
    for s in ("<|im_start|>system\nHé, naïve café 😀 <script>x</script><|im_end|>", "  two  spaces\n\ttab",
              "word " * (CACHE_MIN_RUN + 5)):
        ids = tok.encode(s, add_special_tokens=False)
        want = tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        assert text.text(ids) == want
        assert text.text(ids) == want  # a second time, from the cache for long runs
    assert text.piece(tok.encode(" café", add_special_tokens=False)[0]) == \
        tok.decode(tok.encode(" café", add_special_tokens=False)[:1])


def test_token_view_html_marks_sources_and_model_tokens():
    tok = default_tokenizer()
    t = Trajectory(scenario_id="s")
    t.append(tok.encode("System <b>bold</b>", add_special_tokens=False), "system")
    model = tok.encode(' {"a": 1}', add_special_tokens=False)
    t.append(model, "model", [-0.25 * (i + 1) for i in range(len(model))], turn=0)
    t.append(tok.encode("result", add_special_tokens=False), "tool")
    t.turns.append(Turn(index=0, advantage=0.75))
    html = str(token_view_html(t, TokenText(tok)))
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>" not in html
    hovers = re.findall(r'title="turn 1 · log-prob (\S+) · advantage (\S+)"', html)
    assert hovers == [(f"{-0.25 * (i + 1):.4f}", "+0.7500") for i in range(len(model))]
    t.kept = False  # a filtered rollout: the loss used 0
    assert set(re.findall(r"advantage (\S+)\"", str(token_view_html(t, TokenText(tok))))) == {"+0.0000"}
    assert re.findall(r'class="tok src-(\w+)"', html) == ["system"] + ["model"] * len(model) + ["tool"]
