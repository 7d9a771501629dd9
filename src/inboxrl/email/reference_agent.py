"""A scripted agent (no model) that solves email scenarios with the real tools.

It drives :class:`~inboxrl.email.env.EmailTaskEnv` exactly as a model rollout does (one tool
call per turn, observations as the model would see them), so its episodes are valid
demonstrations and a sanity check of the environment: a task this agent cannot solve by
searching and reading is broken.

* ``mode="read"``: search with keywords chosen from the question (several choices, sampled
  with ``rng`` so demonstrations vary), broaden after a search with no results, rank the hits
  by how well subject and snippet match the question, read the best (sometimes a distractor
  first), accept an email that holds every question term that tells the family's members
  apart and states a value of the asked type, and answer it with that email as the source.
  "I don't know" when nothing fits.
* ``mode="snippet"``: search once and answer from the first hit's snippet (a baseline that
  distractors should defeat).
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

from inboxrl.agent.trajectory import ToolCall
from inboxrl.email.answer_extract import content_terms, extract_answer, match_score, term_set
from inboxrl.email.env import EmailTaskEnv
from inboxrl.email.judge import Judge
from inboxrl.email.rubric import Rubric, outcome_reward
from inboxrl.email.tools import ANSWER, READ, SEARCH
from inboxrl.email.types import Scenario

IDK = "I don't know"
# question words that name the kind of value asked for; rarely in the email itself
_ASK_WORDS = frozenset("""amount number code date time price volume budget cost center target
approved agreed issued used booked start held scheduled due finish go live fixed""".split())
_TAG = re.compile(r"</?b>|…")

History = list[tuple[ToolCall, str]]


@dataclass
class ReferenceEpisode:
    """One scripted episode: the calls, what the env answered, the rubric and its reward."""

    calls: list[ToolCall]
    observations: list[str]
    rubric: Rubric
    reward: float
    events: list[list[str]] = field(default_factory=list)
    finish_reason: str = ""


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


@dataclass
class _State:
    """What the agent has learned so far, derived from the history alone."""

    searches: list[tuple[list[str], list[dict]]] = field(default_factory=list)
    hits: dict[str, dict] = field(default_factory=dict)  # message_id -> hit, first seen order
    reads: dict[str, dict | None] = field(default_factory=dict)  # message_id -> email | None

    @classmethod
    def of(cls, history: History) -> "_State":
        st = cls()
        for call, obs in history:
            data = _json(obs)
            if call.name == SEARCH:
                hits = data if isinstance(data, list) else []
                st.searches.append((list(call.arguments.get("keywords", [])), hits))
                for h in hits:
                    st.hits.setdefault(h["message_id"], h)
            elif call.name == READ:
                ok = isinstance(data, dict) and "body" in data
                st.reads[call.arguments.get("message_id", "")] = data if ok else None
        return st

    def searched(self, keywords: list[str]) -> bool:
        key = sorted({k.lower() for k in keywords})
        return any(sorted({k.lower() for k in kw}) == key for kw, _ in self.searches)


class ReferenceAgent:
    """Scripted search-and-read agent. Variety knobs (probabilities) shape demonstrations:

    ``p_broad``: first search uses two or three of the most specific terms only;
    ``p_full``: first search uses every content word of the question (often too narrow,
    then the agent broadens); ``p_distractor_first``: with two or more candidates, read the
    second-ranked hit first; ``p_max_results``: pass an explicit ``max_results``.
    ``max_searches`` / ``max_reads`` bound the episode.
    """

    def __init__(self, rng: random.Random, mode: str = "read", p_broad: float = 0.3,
                 p_full: float = 0.25, p_distractor_first: float = 0.2,
                 p_max_results: float = 0.2, max_searches: int = 5, max_reads: int = 4):
        if mode not in ("read", "snippet"):
            raise ValueError(f"mode must be 'read' or 'snippet', got {mode!r}")
        self.rng, self.mode = rng, mode
        self.p_broad, self.p_full = p_broad, p_full
        self.p_distractor_first, self.p_max_results = p_distractor_first, p_max_results
        self.max_searches, self.max_reads = max_searches, max_reads

    # -- keyword choice ---------------------------------------------------------------------
    @staticmethod
    def specific_terms(question: str) -> list[str]:
        """Names, labels and numbers of the question, then its other descriptive words."""
        terms = [t for t in content_terms(question) if t.lower() not in _ASK_WORDS]
        strong = [t for t in terms if t[:1].isupper() or any(c.isdigit() for c in t)]
        return strong + [t for t in terms if t not in strong]

    def first_keywords(self, question: str) -> list[str]:
        """One sampled choice of first-search keywords (see the class docstring)."""
        terms = self.specific_terms(question) or content_terms(question) or question.split()[:3]
        x = self.rng.random()
        if x < self.p_full:
            return content_terms(question) or terms
        if x < self.p_full + self.p_broad:
            return self.rng.sample(terms[:4], min(len(terms), self.rng.choice((2, 3))))
        strong = [t for t in terms if t[:1].isupper() or any(c.isdigit() for c in t)]
        return strong or terms[:3]

    def broaden(self, st: _State, question: str) -> list[str] | None:
        """Keywords for the next search after one with no results: the last keywords minus the
        least specific term; then single terms. None when every choice was tried."""
        last = st.searches[-1][0]
        rank = {t.lower(): i for i, t in enumerate(self.specific_terms(question))}
        order = sorted(last, key=lambda t: rank.get(t.lower(), -1))  # unknown words go first
        for drop in order:
            kw = [t for t in last if t != drop]
            if kw and not st.searched(kw):
                return kw
        for t in self.specific_terms(question):
            if not st.searched([t]):
                return [t]
        return None

    def _search(self, keywords: list[str]) -> ToolCall:
        args: dict[str, Any] = {"keywords": keywords}
        if self.rng.random() < self.p_max_results:
            args["max_results"] = 10
        return ToolCall(SEARCH, args)

    # -- the policy -------------------------------------------------------------------------
    def act(self, scenario: Scenario, history: History, turns_left: int | None = None) -> ToolCall:
        """The next tool call given the (call, observation) pairs so far. With
        ``turns_left == 1`` it answers (or says "I don't know") rather than search or read."""
        if self.mode == "snippet":
            return self._act_snippet(scenario, history)
        st = _State.of(history)
        q = scenario.question
        if not st.searches:
            return self._search(self.first_keywords(q))
        accepted = self._accepted(q, st)
        if accepted is not None or turns_left == 1:
            return self._answer(q, st, accepted)
        unread = self._ranked_unread(q, st)
        if unread and len(st.reads) < self.max_reads:
            pick = unread[0]
            if not st.reads and len(unread) > 1 and self.rng.random() < self.p_distractor_first:
                pick = unread[1]
            return ToolCall(READ, {"message_id": pick})
        if len(st.searches) < self.max_searches:
            kw = self.broaden(st, q) if not st.searches[-1][1] else self._refine(q, st)
            if kw is not None:
                return self._search(kw)
        return self._answer(q, st, None)

    def _act_snippet(self, scenario: Scenario, history: History) -> ToolCall:
        if not history:
            return self._search(self.first_keywords(scenario.question))
        hits = _json(history[-1][1])
        if isinstance(hits, list) and hits:
            text = f"{hits[0]['subject']}. {_TAG.sub(' ', hits[0]['snippet'])}"
            found = extract_answer(scenario.question, text)
            if found is not None:
                return ToolCall(ANSWER, {"answer": found.value, "sources": [hits[0]["message_id"]]})
        return ToolCall(ANSWER, {"answer": IDK, "sources": []})

    def _refine(self, q: str, st: _State) -> list[str] | None:
        """After reading without success: all specific terms, if not searched yet."""
        kw = self.specific_terms(q)
        return kw if kw and not st.searched(kw) else None

    def _ranked_unread(self, q: str, st: _State) -> list[str]:
        scored = [(match_score(q, f"{h['subject']} {_TAG.sub(' ', h['snippet'])}"), -i, mid)
                  for i, (mid, h) in enumerate(st.hits.items()) if mid not in st.reads]
        return [mid for _, _, mid in sorted(scored, reverse=True)]

    def _discriminative(self, q: str, st: _State) -> set[str]:
        """Question terms found in some hit subjects and missing from others: the words that
        tell a family's members apart (the quarter, the meeting kind, the site...)."""
        subjects = [term_set(h["subject"]) for h in st.hits.values()]
        return {t for t in term_set(q)
                if any(t in s for s in subjects) and not all(t in s for s in subjects)}

    def _accepted(self, q: str, st: _State) -> tuple[str, str] | None:
        """(message_id, value) of the best read email that holds every discriminative term
        and a value of the asked type in its body."""
        need = self._discriminative(q, st)
        best = None
        for mid, email in st.reads.items():
            if email is None or not need <= term_set(f"{email['subject']} {email['body']}"):
                continue
            found = extract_answer(q, email["body"])
            if found is None:
                continue
            score = match_score(q, f"{email['subject']} {email['body']}")
            if best is None or score > best[0]:
                best = (score, mid, found.value)
        return None if best is None else (best[1], best[2])

    def _answer(self, q: str, st: _State, accepted: tuple[str, str] | None) -> ToolCall:
        if accepted is None:  # best effort: the read email that matches the question best
            tries = [(match_score(q, f"{e['subject']} {e['body']}"), mid, extract_answer(q, e["body"]))
                     for mid, e in st.reads.items() if e is not None]
            tries = [t for t in tries if t[2] is not None and t[0] >= 0.5]
            if tries:
                _, mid, found = max(tries, key=lambda t: t[0])
                accepted = (mid, found.value)
        if accepted is None:
            return ToolCall(ANSWER, {"answer": IDK, "sources": []})
        return ToolCall(ANSWER, {"answer": accepted[1], "sources": [accepted[0]]})


def run_reference_episode(store: Any, scenario: Scenario, judge: Judge, max_turns: int,
                          agent: ReferenceAgent) -> ReferenceEpisode:
    """Run one episode of ``agent`` in a fresh :class:`EmailTaskEnv`; the env's finish reason
    is ``answered``/``idk`` when the agent answered, else ``max_turns``."""
    env = EmailTaskEnv(store, scenario, judge, max_turns)
    history: History = []
    events: list[list[str]] = []
    for turn in range(max_turns):
        call = agent.act(scenario, history, turns_left=max_turns - turn)
        result = env.step(call)
        history.append((call, result.observation))
        events.append(result.events)
        if result.done:
            break
    reason = env.finish_reason if env.done else "max_turns"
    rubric = env.finish(reason)
    return ReferenceEpisode([c for c, _ in history], [o for _, o in history], rubric,
                            outcome_reward(rubric, max_turns), events, reason)
