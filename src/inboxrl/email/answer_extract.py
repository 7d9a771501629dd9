"""Generic answer extraction for the scripted reference agent (no model).

Given a question and an email's text, find the value that answers it: the question's wording
gives the *type* of value wanted (a time, a date, a place, a quantity, an amount of money, a
code or number, a person's name), regular expressions list the candidates of that type in the
text, and the candidate in the sentence that shares most terms with the question wins (ties:
the candidate nearest a term of the question, then the earliest). Nothing here knows the
synthetic generator's templates; it works on any prose that states values near the words a
question uses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

STOP_WORDS = frozenset("""
a about above after again all also am an and any are as at be been before being below between
both but by can could did do does doing down during each few for from further had has have
having he her here hers him his how i if in into is it its itself just me more most my myself
no nor not now of off on once only or other our ours out over own same she should so some such
than that the their theirs them then there these they this those through to too under until up
very was we were what when where which while who whom why will with would you your yours
yourself please tell know find give does did email emails mail inbox
""".split())

# answer types, checked in this order against the lower-cased question
_TYPE_CUES: list[tuple[str, re.Pattern[str]]] = [
    ("time", re.compile(r"\bwhat time\b|\bat what time\b|\bwhich time\b")),
    ("date", re.compile(r"\bdate\b|\bwhen\b|\bwhat day\b|\bwhich day\b|\bdeadline\b")),
    ("place", re.compile(r"\bwhere\b|\bwhich hotel\b|\bwhat hotel\b|\blocation\b|\bvenue\b|"
                         r"\bwhich city\b|\bwhat city\b|\bwhich room\b")),
    ("quantity", re.compile(r"\bvolume\b|\bhow many\b|\bquantity\b")),
    ("money", re.compile(r"\bamount\b|\bhow much\b|\bprice\b|\bcost\b(?! center)|\bbudget\b|"
                         r"\btotal\b|\bfee\b|\bpaid\b|\bpay\b|\bvalue\b|\brate\b")),
    ("code", re.compile(r"\bnumber\b|\bcode\b|\bid\b|\bcost center\b|\breference\b|\bpo\b|"
                        r"\bconfirmation\b")),
    ("name", re.compile(r"\bwho\b|\bwhom\b|\bwhose\b|\bwhich person\b|\bname of\b")),
]

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_PATTERNS: dict[str, list[re.Pattern[str]]] = {
    "time": [re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:[AaPp]\.?[Mm]\.?)(?![\w])"),
             re.compile(r"\b\d{1,2}:\d{2}\b")],
    "date": [re.compile(rf"\b{_MONTH}\.? \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}\b"),
             re.compile(rf"\b\d{{1,2}} {_MONTH} \d{{4}}\b"),
             re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), re.compile(r"\b\d{1,2}/\d{1,2}/\d{4}\b")],
    "money": [re.compile(r"\$\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:million|billion|thousand))?"
                         r"(?:/[A-Za-z]+|\s(?:per|a|an)\s[A-Za-z]+)?")],
    "quantity": [re.compile(r"(?<![$\w.,-])\d[\d,]*(?:\.\d+)?\s[A-Za-z]+(?:/[A-Za-z]+|"
                            r"\sper\s[A-Za-z]+)?")],
    "code": [re.compile(r"\b[A-Z]{1,5}-\d[\dA-Z-]*\b"),
             re.compile(r"\b(?=[A-Z0-9]*[A-Z])(?=[A-Z0-9]*\d)[A-Z0-9]{4,12}\b"),
             re.compile(r"\b[A-Z]{5,8}\b")],
    "name": [re.compile(r"\b[A-Z][a-z]+(?:\s[A-Z]\.)?\s[A-Z][a-z]+(?:-[A-Z][a-z]+)?\b")],
}
_PLACE_START = re.compile(r"\b(?:in|at)\s+")
_PLACE_STOP = re.compile(r"[,.;:!?()\n]|\s(?:in|at|on|for|by|with|from|to|and|as)\s")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])|\n+")
_WORD = re.compile(r"[A-Za-z0-9]+")
_CODE_WORDS = frozenset({"AM", "PM", "USA", "SCADA", "LLP", "FYI", "RSVP", "ASAP", "CEO", "CFO"})


@dataclass(frozen=True)
class Extraction:
    """A value found in a text: the value, its type, and the sentence overlap that chose it."""

    value: str
    qtype: str
    score: int


def answer_type(question: str) -> str:
    """The kind of value the question asks for (``time``, ``date``, ``place``, ``quantity``,
    ``money``, ``code``, ``name``), or ``text`` when no cue matches. Capitalised words after
    the first are skipped (a person called Price is not a price)."""
    words = question.split()
    # capitalised words after the first are names ("Michael Price"), not cues
    q = " ".join(words[:1] + [w for w in words[1:] if not w[:1].isupper()]).lower()
    for qtype, cue in _TYPE_CUES:
        if cue.search(q):
            return qtype
    return "text"


def stem(word: str) -> str:
    """A crude stem: lower case, a plural ``s`` removed from longer words."""
    w = word.lower()
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def content_terms(text: str) -> list[str]:
    """The text's words minus stop words, in order, de-duplicated, original case kept."""
    seen: dict[str, str] = {}
    for w in _WORD.findall(text):
        if _is_term(w) and stem(w) not in seen:
            seen[stem(w)] = w
    return list(seen.values())


def _is_term(word: str) -> bool:
    return word.lower() not in STOP_WORDS and (len(word) > 1 or word.isdigit())


def term_set(text: str) -> set[str]:
    """Stems of the text's content words (stop words and single letters left out)."""
    return {stem(w) for w in _WORD.findall(text) if _is_term(w)}


def _place_candidates(sentence: str) -> list[tuple[int, str]]:
    out = []
    for m in _PLACE_START.finditer(sentence):
        rest = sentence[m.end():]
        stop = _PLACE_STOP.search(rest)
        phrase = (rest[:stop.start()] if stop else rest).strip()
        words = phrase.split()
        if not words or words[0][0].isdigit() or len(words) > 6:
            continue
        if not any(w[0].isupper() for w in words) and not words[0].lower() == "the":
            continue
        out.append((m.end(), phrase))
    return out


def candidates(qtype: str, sentence: str) -> list[tuple[int, str]]:
    """(position, value) of every value of type ``qtype`` in ``sentence``."""
    if qtype == "place":
        return _place_candidates(sentence)
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for pattern in _PATTERNS.get(qtype, []):
        for m in pattern.finditer(sentence):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue
            value = m.group(0).strip()
            if qtype == "code" and value in _CODE_WORDS:
                continue
            found.append((m.start(), value))
            taken.append((m.start(), m.end()))
    return sorted(found)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_SPLIT.split(text) if s.strip()]


def extract_answer(question: str, text: str) -> Extraction | None:
    """The value in ``text`` that best answers ``question``, or None when the text holds no
    value of the type the question asks for (see the module docstring for the rule)."""
    qtype = answer_type(question)
    if qtype == "text":
        return None
    q_terms = term_set(question)
    best: tuple[tuple[int, int, int], str, int] | None = None
    for si, sent in enumerate(sentences(text)):
        words = [(m.start(), stem(m.group(0))) for m in _WORD.finditer(sent)]
        for pos, value in candidates(qtype, sent):
            if term_set(value) and term_set(value) <= q_terms:
                continue  # the question's own words are not its answer
            end = pos + len(value)  # the value's own words do not count as context
            hits = [p for p, w in words if w in q_terms and not pos <= p < end]
            overlap = len({w for p, w in words if w in q_terms and not pos <= p < end})
            dist = min((abs(p - pos) for p in hits), default=10**6)
            key = (overlap, -dist, -si)
            if best is None or key > best[0]:
                best = (key, value, overlap)
    if best is None:
        return None
    return Extraction(best[1], qtype, best[2])


def match_score(question: str, text: str) -> float:
    """Share of the question's content terms found in ``text`` (0..1)."""
    q = term_set(question)
    return len(q & term_set(text)) / len(q) if q else 0.0
