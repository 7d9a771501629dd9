"""Answer judges (DESIGN.md §4): "I don't know" detection, a normalised-match judge and an
LLM judge for any OpenAI-compatible chat-completions endpoint.

Every judge has ``judge(question, reference, answer) -> Verdict``. A judge never raises on
model text; a judge that cannot decide returns ``Verdict(None, error)`` and the environment
records ``judge_error`` (the rollout is then neither rewarded nor punished for its answer).
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import time
import unicodedata
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from inboxrl.utils.atomic import atomic_write_json


@dataclass
class Verdict:
    """A judge's decision: ``correct`` is None exactly when ``error`` says why there is none."""

    correct: bool | None
    error: str | None = None
    cached: bool = False


class Judge(Protocol):
    def judge(self, question: str, reference: str, answer: str) -> Verdict: ...


# -- normalisation ------------------------------------------------------------------------
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "`": "'",
                         "\u00b4": "'"})
_MONTHS = {m: i + 1 for i, m in enumerate(
    "january february march april may june july august september october november december".split())}
_MONTHS.update({m[:3]: i for m, i in list(_MONTHS.items())})
_MONTHS["sept"] = 9
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_DATE_MDY = re.compile(rf"\b({_MONTH_RE})\.?\s+{_DAY},?\s+(\d{{4}})\b")
_DATE_DMY = re.compile(rf"\b{_DAY}\s+(?:of\s+)?({_MONTH_RE})\.?,?\s+(\d{{4}})\b")
_DATE_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_DATE_US = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
_NUMBER = re.compile(r"(?<![\w.-])\$?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w-])")
_TOKEN = re.compile(r"\d{4}-\d{2}-\d{2}|\d+(?:\.\d+)?|[^\W_]+")
_ARTICLES = {"a", "an", "the"}


def _fold(text: str) -> str:
    """NFKC, lower case, unicode quotes folded to ASCII ones."""
    return unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()


def _iso(year: str, month: int, day: str) -> str:
    return f"{int(year):04d}-{int(month):02d}-{int(day):02d}"


def _canonical_dates(text: str) -> str:
    """Rewrites ``March 14, 2001``, ``14 March 2001``, ``3/14/2001`` (US order) and
    ``2001-3-14`` as ``2001-03-14``; impossible month/day numbers are left untouched."""
    def ok(m: int, d: str) -> bool:
        return 1 <= m <= 12 and 1 <= int(d) <= 31

    text = _DATE_MDY.sub(lambda m: _iso(m[3], _MONTHS[m[1]], m[2]), text)
    text = _DATE_DMY.sub(lambda m: _iso(m[3], _MONTHS[m[2]], m[1]), text)
    text = _DATE_US.sub(lambda m: _iso(m[3], int(m[1]), m[2]) if ok(int(m[1]), m[2]) else m[0], text)
    return _DATE_ISO.sub(lambda m: _iso(m[1], int(m[2]), m[3]) if ok(int(m[2]), m[3]) else m[0], text)


def _canonical_number(m: re.Match[str]) -> str:
    whole = m[1].replace(",", "")
    frac = (m[2] or "").rstrip("0")
    return whole + (frac if frac != "." else "")


def normalize(text: str) -> str:
    """Canonical form used for answer matching.

    Lower case; unicode quotes folded; dates rewritten as ``YYYY-MM-DD``; numbers lose their
    currency sign, thousands separators and trailing zero decimals (``$48,200.00``,
    ``48,200`` and ``48200`` all become ``48200``; ``3.50`` becomes ``3.5``; leading zeros stay, they matter in codes); ``%`` becomes
    ``percent``; all other punctuation separates tokens; the articles a/an/the are dropped.
    The result is the tokens joined by single spaces.
    """
    text = _canonical_dates(_fold(text or ""))
    text = text.replace("%", " percent ")
    text = _NUMBER.sub(_canonical_number, text)
    return " ".join(t for t in _TOKEN.findall(text) if t not in _ARTICLES)


def is_idk(answer: str | None) -> bool:
    """True when the answer, lower-cased with punctuation and quotes folded (``don’t`` and
    ``don't`` both give ``dont``), is exactly ``i dont know`` or ``i do not know``."""
    if not isinstance(answer, str):
        return False
    folded = re.sub(r"[^\w\s]|_", "", _fold(answer))
    return " ".join(folded.split()) in ("i dont know", "i do not know")


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 between two already-normalised strings."""
    pred, ref = prediction.split(), reference.split()
    common = Counter(pred) & Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


class NormalizedJudge:
    """Correct when the normalised reference appears (on token boundaries) in the normalised
    answer, or when their token F1 is at least ``min_f1`` (DESIGN.md §4)."""

    def __init__(self, min_f1: float = 0.8):
        self.min_f1 = min_f1

    def judge(self, question: str, reference: str, answer: str) -> Verdict:
        ref, ans = normalize(reference), normalize(answer if isinstance(answer, str) else "")
        if not ref:
            return Verdict(None, f"reference answer {reference!r} is empty after normalisation")
        if not ans:
            return Verdict(False)
        if f" {ref} " in f" {ans} ":
            return Verdict(True)
        return Verdict(token_f1(ans, ref) >= self.min_f1)


# -- LLM judge ----------------------------------------------------------------------------
JUDGE_SYSTEM_PROMPT = (
    "You grade answers to questions about emails. You are given a question, the reference "
    "answer and a candidate answer. The candidate is correct when it states the same fact as "
    "the reference (formatting, wording and extra harmless context do not matter); it is "
    "wrong when it states a different value, hedges between values or does not answer. "
    "Reply with exactly one word: yes (correct) or no (wrong).")
_YES = {"yes", "correct", "true"}
_NO = {"no", "incorrect", "wrong", "false"}


class _Retryable(Exception):
    """A failure worth another attempt (timeout, 5xx, 429, connection error, unparseable reply)."""


def parse_verdict(content: str) -> bool | None:
    """The yes/no verdict in a judge reply: its first word (or a whole-word ``yes``/``no``
    when the reply is one short line); None when it says neither or both."""
    words = re.findall(r"[a-z]+", _fold(content or ""))
    if not words:
        return None
    if words[0] in _YES:
        return True
    if words[0] in _NO:
        return False
    if len(words) <= 12:
        said_yes, said_no = bool(_YES & set(words)), bool(_NO & set(words))
        if said_yes != said_no:
            return said_yes
    return None


def _endpoint(base_url: str) -> str:
    url = base_url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


class LLMJudge:
    """Asks an OpenAI-compatible ``/v1/chat/completions`` endpoint for a yes/no verdict.

    Uses only the standard library. A timeout, an HTTP 5xx or 429, a connection error or an
    unparseable reply is retried up to ``retries`` more times with exponential backoff
    (``backoff * 2**k`` seconds); after that, or at once on another HTTP error, the result is
    ``Verdict(None, error)``; ``stop`` (a ``threading.Event``) ends the retries early once set.
    At most ``(retries + 1) * timeout`` plus the backoff is spent on one answer (the settings
    ``judge_timeout`` and ``judge_retries``). Verdicts are cached on disk (one JSON file per key, written
    atomically) under ``cache_dir`` when given, keyed by a hash of (model, question, reference,
    answer); errors are never cached. The API key is read from ``api_key_env`` (optional).
    """

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 30, retries: int = 3, backoff: float = 0.5,
                 cache_dir: str | Path | None = None, max_tokens: int | None = 8):
        self.url = _endpoint(base_url)
        self.model, self.api_key_env = model, api_key_env
        self.timeout, self.retries, self.backoff = timeout, max(0, int(retries)), backoff
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_tokens = max_tokens
        self.num_requests = 0  # HTTP requests sent (for reports and tests)

    supports_stop = True  # judge(..., stop=threading.Event) gives up between attempts once set

    def judge(self, question: str, reference: str, answer: str, stop: Any = None) -> Verdict:
        key = self._cache_key(question, reference, answer)
        cached = self._cache_get(key)
        if cached is not None:
            return Verdict(cached, None, cached=True)
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt and stop is not None:
                if stop.wait(self.backoff * 2 ** (attempt - 1)):
                    return Verdict(None, f"LLM judge abandoned after {attempt} attempts: {last}")
            elif attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                verdict = self._ask(question, reference, answer)
            except _Retryable as e:
                last = str(e)
                continue
            except _Fatal as e:
                return Verdict(None, str(e))
            self._cache_put(key, verdict, question, reference, answer)
            return Verdict(verdict)
        return Verdict(None, f"LLM judge failed after {self.retries + 1} attempts: {last}")

    # -- one request -----------------------------------------------------------------------
    def _payload(self, question: str, reference: str, answer: str) -> bytes:
        user = f"Question: {question}\nReference answer: {reference}\nCandidate answer: {answer}\n" \
               "Is the candidate answer correct? Reply yes or no."
        body: dict[str, Any] = {"model": self.model, "temperature": 0,
                                "messages": [{"role": "system", "content": JUDGE_SYSTEM_PROMPT},
                                             {"role": "user", "content": user}]}
        if self.max_tokens is not None:  # None: leave the limit to the server
            body["max_tokens"] = self.max_tokens
        return json.dumps(body).encode("utf-8")

    def _ask(self, question: str, reference: str, answer: str) -> bool:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=self._payload(question, reference, answer),
                                     headers=headers, method="POST")
        self.num_requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = f"HTTP {e.code} from {self.url}"
            if e.code >= 500 or e.code == 429:
                raise _Retryable(detail) from e
            raise _Fatal(detail) from e
        except (TimeoutError, socket.timeout) as e:
            raise _Retryable(f"timed out after {self.timeout}s") from e
        except http.client.HTTPException as e:  # e.g. a truncated or malformed response
            raise _Retryable(f"bad HTTP response from {self.url}: {type(e).__name__}") from e
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"timed out after {self.timeout}s") from e
            raise _Retryable(f"cannot reach {self.url}: {reason}") from e
        return _verdict_from_body(raw)

    # -- cache -----------------------------------------------------------------------------
    def _cache_key(self, question: str, reference: str, answer: str) -> str:
        blob = json.dumps([self.model, question, reference, answer], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _cache_get(self, key: str) -> bool | None:
        if self.cache_dir is None:
            return None
        try:
            value = json.loads((self.cache_dir / f"{key}.json").read_text(encoding="utf-8"))["correct"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return value if isinstance(value, bool) else None

    def _cache_put(self, key: str, correct: bool, question: str, reference: str, answer: str) -> None:
        if self.cache_dir is None:
            return
        try:
            atomic_write_json(self.cache_dir / f"{key}.json",
                              {"correct": correct, "model": self.model, "question": question,
                               "reference": reference, "answer": answer})
        except OSError:
            pass  # a cache that cannot be written only costs a repeated request


class _Fatal(Exception):
    """A failure another attempt will not fix (HTTP 4xx other than 429)."""


def _verdict_from_body(raw: bytes) -> bool:
    try:
        body: Any = json.loads(raw.decode("utf-8"))
        content = body["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise _Retryable(f"unexpected response body: {raw[:200]!r}") from e
    verdict = parse_verdict(content if isinstance(content, str) else "")
    if verdict is None:
        raise _Retryable(f"unparseable verdict: {str(content)[:200]!r}")
    return verdict


def make_judge(kind: str = "normalized", **opts: Any) -> Judge:
    """``normalized`` -> :class:`NormalizedJudge` (options: min_f1); ``llm`` -> :class:`LLMJudge`
    (options: base_url, model, api_key_env, timeout, retries, backoff, cache_dir)."""
    if kind in ("normalized", "normalised"):
        return NormalizedJudge(**opts)
    if kind == "llm":
        missing = [k for k in ("base_url", "model") if not opts.get(k)]
        if missing:
            raise ValueError(f"the llm judge needs {', '.join(missing)}")
        return LLMJudge(**opts)
    raise ValueError(f"unknown judge kind {kind!r} (choose normalized or llm)")
