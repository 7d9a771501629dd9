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
  With ``p_slip`` > 0 the first search sometimes carries a scripted slip (a keyword miscopied
  the way a small model miscopies one: a month or number changed, a name misspelt, a word the
  email lacks added); the agent then recovers as from any empty search. Such calls are flagged
  in :attr:`ReferenceEpisode.injected` so a demonstration can show them without teaching them.
* ``mode="snippet"``: search once and answer from the first hit's snippet (a baseline that
  distractors should defeat).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from inboxrl.email.types import Scenario, ToolCall
from inboxrl.email.answer_extract import contains_term, extract_answer, key_terms, match_score
from inboxrl.email.env import EmailTaskEnv
from inboxrl.email.judge import Judge
from inboxrl.email.rubric import Rubric, outcome_reward
from inboxrl.email.tools import ANSWER, READ, SEARCH, parse_result

IDK = "I don't know"
ROOMY_TURNS = 6  # turns left at the start for the agent to risk a too-narrow first search
# question words that name the kind of value asked for; rarely in the email itself
_ASK_WORDS = frozenset("""amount number code date time price volume budget cost center target
approved agreed issued used booked start held scheduled due finish go live fixed hotel
which""".split())
_MONTHS = ("January February March April May June July August September October November "
           "December").split()
_MISSPELL = ("s", "er", "en", "ey", "ing")  # endings a slipped name gets instead of its last two letters
SLIP_TURNS = 4  # a slip needs room: slip, recovery search, read, answer
_FORWARD = re.compile(r"^\s*(fw|fwd)\s*:", re.IGNORECASE)
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
    injected: list[bool] = field(default_factory=list)  # per call: a scripted slip (see p_slip)


def _strong(term: str) -> bool:
    """A name, label or number: capitalised or holding a digit."""
    return term[:1].isupper() or any(c.isdigit() for c in term)


def _hit_text(hit: dict) -> str:
    """A search hit's subject and snippet, highlight tags removed."""
    return f"{hit['subject']}. {_TAG.sub(' ', hit['snippet'])}"


def _json(text: str) -> Any:
    """A tool result as data (hits list, email dict, error dict), as :func:`tools.parse_result` reads it."""
    return parse_result(text)


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
    then the agent broadens), only when ``roomy_turns`` or more turns are left;
    ``p_distractor_first``: with two or more candidates, read the second-ranked hit first;
    ``p_max_results``: pass an explicit ``max_results``;
    ``p_slip``: the first search is a scripted slip (:meth:`slip_keywords`), only with
    ``SLIP_TURNS`` or more turns left; :attr:`last_injected` tells whether the last call was one.
    ``max_searches`` / ``max_reads`` bound the episode; ``max_keywords`` (None: no limit) the
    keywords of one search (the first ones of each choice are kept).
    """

    def __init__(self, rng: random.Random, mode: str = "read", p_broad: float = 0.3,
                 p_full: float = 0.25, p_distractor_first: float = 0.2,
                 p_max_results: float = 0.2, max_searches: int = 5, max_reads: int = 5,
                 roomy_turns: int = ROOMY_TURNS, max_keywords: int | None = None,
                 p_slip: float = 0.0):
        if mode not in ("read", "snippet"):
            raise ValueError(f"mode must be 'read' or 'snippet', got {mode!r}")
        self.rng, self.mode = rng, mode
        self.p_broad, self.p_full = p_broad, p_full
        self.p_distractor_first, self.p_max_results = p_distractor_first, p_max_results
        self.max_searches, self.max_reads = max_searches, max_reads
        self.roomy_turns, self.max_keywords = roomy_turns, max_keywords
        self.p_slip, self.last_injected = p_slip, False

    # -- keyword choice ---------------------------------------------------------------------
    @staticmethod
    def specific_terms(question: str) -> list[str]:
        """Names, labels and numbers of the question (short numbers joined to the word before
        them: ``Phase 1``), then its other descriptive words; words that only name the kind
        of value asked for (amount, date, code...) are left out."""
        terms = [t for t in key_terms(question) if t.split()[0].lower() not in _ASK_WORDS]
        strong = [t for t in terms if _strong(t)]
        return strong + [t for t in terms if t not in strong]

    def first_keywords(self, question: str, roomy: bool = True) -> list[str]:
        """One sampled choice of first-search keywords (see the class docstring); the
        often-too-narrow full choice only when ``roomy`` (turns to spare for broadening)."""
        terms = self.specific_terms(question) or key_terms(question) or question.split()[:3]
        x = self.rng.random()
        if x < self.p_full and roomy:
            return (key_terms(question) or terms)[:self.max_keywords]
        if x < self.p_full + self.p_broad:
            pool = terms[:4]
            return self.rng.sample(pool, min(len(pool), self.rng.choice((2, 3))))[:self.max_keywords]
        return ([t for t in terms if _strong(t)] or terms[:3])[:self.max_keywords]

    def keyword_ladder(self, question: str) -> list[list[str]]:
        """Keyword lists from narrow to broad, tried in order after a search with no results
        or reads without an answer: all specific terms, the strong ones, then the strong
        ones with the last dropped one at a time, then single terms."""
        terms = self.specific_terms(question)
        strong = [t for t in terms if _strong(t)]
        ladder = [terms, strong] + [strong[:k] for k in range(len(strong) - 1, 0, -1)]
        ladder = [kw[:self.max_keywords] for kw in ladder if kw] + [[t] for t in terms]
        return [kw for i, kw in enumerate(ladder) if kw not in ladder[:i]]

    def next_keywords(self, st: _State, question: str) -> list[str] | None:
        """The first ladder rung not searched yet and not a superset of a search that found
        nothing (it would find nothing too); None when none is left."""
        empty = [{k.lower() for k in kw} for kw, hits in st.searches if not hits]
        for kw in self.keyword_ladder(question):
            low = {k.lower() for k in kw}
            if not st.searched(kw) and not any(e <= low for e in empty):
                return kw
        return None

    def slip_keywords(self, question: str, keywords: list[str]) -> list[str]:
        """``keywords`` with one slip of the kind SmolLM2-135M makes when it copies keywords
        (seen in its eval trajectories: ``Stewards`` for Stewart, ``February`` for March, an
        added ``number``): a word of a strong term changed (a month to another month, a number
        by one, a name's last two letters replaced) or, half the time when the question has
        one, a question word that is not a search term (``number``, ``code``) added."""
        extra = [t for t in key_terms(question) if t.lower() in _ASK_WORDS and t.lower() != "which"
                 and t not in keywords]
        if extra and self.rng.random() < 0.5:
            full = self.max_keywords is not None and len(keywords) >= self.max_keywords
            return (keywords[:self.max_keywords - 1] if full else keywords) + [self.rng.choice(extra)]
        strong = [i for i, k in enumerate(keywords) if _strong(k)] or list(range(len(keywords)))
        i = self.rng.choice(strong)
        words = keywords[i].split()
        j = self.rng.randrange(len(words))
        words[j] = self._miscopy(words[j])
        return keywords[:i] + [" ".join(words)] + keywords[i + 1:]

    def _miscopy(self, word: str) -> str:
        if word in _MONTHS:
            return self.rng.choice([m for m in _MONTHS if m != word])
        if word.isdigit():
            n = int(word)
            return str(n + 1 if n == 0 else n + self.rng.choice((-1, 1)))
        digits = [i for i, c in enumerate(word) if c.isdigit()]
        if digits:  # a label: Q1 -> Q2, DL-29404 -> DL-29405
            i = digits[-1]
            return word[:i] + str((int(word[i]) + 1) % 10) + word[i + 1:]
        if len(word) <= 3:
            return word + word[-1]
        return word[:-2] + self.rng.choice([e for e in _MISSPELL if not word.endswith(e)])

    def _search(self, keywords: list[str]) -> ToolCall:
        args: dict[str, Any] = {"keywords": keywords}
        if self.rng.random() < self.p_max_results:
            args["max_results"] = 10
        return ToolCall(SEARCH, args)

    # -- the policy -------------------------------------------------------------------------
    def act(self, scenario: Scenario, history: History, turns_left: int | None = None) -> ToolCall:
        """The next tool call given the (call, observation) pairs so far.

        ``turns_left`` (None: unlimited) makes the agent plan within its budget: the full-
        question first search only with ``roomy_turns`` (default ``ROOMY_TURNS``) or more turns,
        a distractor read first only with three or more left (distractor, reference, answer),
        and with one left it answers (or says "I don't know") rather than search or read."""
        self.last_injected = False
        if self.mode == "snippet":
            return self._act_snippet(scenario, history)
        st = _State.of(history)
        q = scenario.question
        if not st.searches:
            keywords = self.first_keywords(q, turns_left is None or turns_left >= self.roomy_turns)
            room = turns_left is None or turns_left >= SLIP_TURNS
            if self.p_slip > 0 and room and self.rng.random() < self.p_slip:
                self.last_injected = True
                keywords = self.slip_keywords(q, keywords)
            return self._search(keywords)
        accepted = self._accepted(q, st)
        if accepted is not None or turns_left == 1:
            return self._answer(accepted)
        unread = self._ranked_unread(q, st)
        if unread and (len(st.reads) < self.max_reads or self._covers_all(q, st, unread[0])):
            pick = unread[0]
            spare = turns_left is None or turns_left >= 3
            if not st.reads and len(unread) > 1 and spare and self.rng.random() < self.p_distractor_first:
                pick = unread[1]
            return ToolCall(READ, {"message_id": pick})
        if len(st.searches) < self.max_searches:
            kw = self.next_keywords(st, q)
            if kw is not None:
                return self._search(kw)
        return self._answer(None)

    def _act_snippet(self, scenario: Scenario, history: History) -> ToolCall:
        if not history:
            return self._search(self.first_keywords(scenario.question))
        hits = _json(history[-1][1])
        if isinstance(hits, list) and hits:
            text = _hit_text(hits[0])
            found = extract_answer(scenario.question, text)
            if found is not None:
                return ToolCall(ANSWER, {"answer": found.value, "sources": [hits[0]["message_id"]]})
        return ToolCall(ANSWER, {"answer": IDK, "sources": []})

    def required_terms(self, q: str, st: _State) -> list[str]:
        """The question's strong terms (names, labels, numbers), then its telling words:
        words found in some hit subjects but not in others (what tells a family's members
        apart: the meeting kind, the item, the service)."""
        subjects = [h["subject"] for h in st.hits.values()]
        telling = [t for t in key_terms(q) if not _strong(t)
                   and any(contains_term(s, t) for s in subjects)
                   and not all(contains_term(s, t) for s in subjects)]
        return [t for t in self.specific_terms(q) if _strong(t)] + telling

    def answers_question(self, q: str, st: _State, text: str) -> bool:
        """Whether an email's text can be the one ``q`` asks about: it holds every strong term,
        and every telling word that some rival holds in its subject (a rival: a hit whose
        subject and snippet hold every strong term too)."""
        need = self.required_terms(q, st)
        strong = [t for t in need if _strong(t)]
        if not all(contains_term(text, t) for t in strong):
            return False
        rivals = [h["subject"] for h in st.hits.values()
                  if all(contains_term(_hit_text(h), t) for t in strong)]
        return all(contains_term(text, t) or not any(contains_term(r, t) for r in rivals)
                   for t in need if not _strong(t))

    def _ranked_unread(self, q: str, st: _State) -> list[str]:
        """Unread hits, best first: most required terms in subject and snippet, then overall
        match; forwards after originals; then the order the searches returned them."""
        need = self.required_terms(q, st)
        scored = []
        for i, (mid, h) in enumerate(st.hits.items()):
            if mid in st.reads:
                continue
            text = _hit_text(h)
            covered = sum(contains_term(text, t) for t in need)
            scored.append((covered, match_score(q, text), not _FORWARD.match(h["subject"]), -i, mid))
        return [row[-1] for row in sorted(scored, reverse=True)]

    def _covers_all(self, q: str, st: _State, mid: str) -> bool:
        """Whether a hit's subject and snippet already answer to the question (such a hit is
        read even when the read budget is spent)."""
        return self.answers_question(q, st, _hit_text(st.hits[mid]))

    def _accepted(self, q: str, st: _State) -> tuple[str, str] | None:
        """(message_id, value) of a read email that :meth:`answers_question` and states a value
        of the asked type in its body (an original preferred to a forward)."""
        best = None
        for mid, email in st.reads.items():
            if email is None:
                continue
            text = f"{email['subject']} {email['body']}"
            if not self.answers_question(q, st, text):
                continue
            found = extract_answer(q, email["body"])
            if found is None:
                continue
            key = (not _FORWARD.match(email["subject"]), match_score(q, text))
            if best is None or key > best[0]:
                best = (key, mid, found.value)
        return None if best is None else (best[1], best[2])

    @staticmethod
    def _answer(accepted: tuple[str, str] | None) -> ToolCall:
        """The final answer with its source, or "I don't know" when no read email passed
        :meth:`_accepted` (a guess from an email that lacks the question's terms is more
        often wrong than right, and wrong costs more than "I don't know")."""
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
    injected: list[bool] = []
    for turn in range(max_turns):
        call = agent.act(scenario, history, turns_left=max_turns - turn)
        injected.append(agent.last_injected)
        result = env.step(call)
        history.append((call, result.observation))
        events.append(result.events)
        if result.done:
            break
    reason = env.finish_reason if env.done else "max_turns"
    rubric = env.finish(reason)
    return ReferenceEpisode([c for c, _ in history], [o for _, o in history], rubric,
                            outcome_reward(rubric, max_turns), events, reason, injected)
