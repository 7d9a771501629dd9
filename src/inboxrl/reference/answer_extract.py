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
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"  # 48,200 | 48200 | 3.50 (no trailing comma)
_PATTERNS: dict[str, list[re.Pattern[str]]] = {
    "time": [re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:[AaPp]\.?[Mm]\.?)(?![\w])"),
             re.compile(r"\b\d{1,2}:\d{2}\b")],
    "date": [re.compile(rf"\b{_MONTH}\.? \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}}\b"),
             re.compile(rf"\b\d{{1,2}} {_MONTH} \d{{4}}\b"),
             re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), re.compile(r"\b\d{1,2}/\d{1,2}/\d{4}\b")],
    "money": [re.compile(rf"\$\s?{_NUM}(?:\s?(?:million|billion|thousand))?"
                         r"(?:/[A-Za-z]+|\s(?:per|a|an)\s[A-Za-z]+)?")],
    "quantity": [re.compile(rf"(?<![$\w.,-]){_NUM}\s[A-Za-z]+(?:/[A-Za-z]+|"
                            r"\sper\s[A-Za-z]+)?")],
    "code": [re.compile(r"\b[A-Z]{1,5}-\d[\dA-Z-]*\b"),
             re.compile(r"\b(?=[A-Z0-9]*[A-Z])(?=[A-Z0-9]*\d)[A-Z0-9]{4,12}\b"),
             re.compile(r"\b[A-Z]{5,8}\b")],
    "name": [re.compile(r"\b[A-Z][a-z]+(?:\s[A-Z]\.)?\s[A-Z][a-z]+(?:-[A-Z][a-z]+)?\b")],
}
_PLACE_START = re.compile(r"\b(?:in|at)\s+")
_ASKED_NOUN = re.compile(r"\b(?:[Ww]hich|[Ww]hat)\s+([a-z]+)")  # "Which hotel" -> hotel
_LABELLED = re.compile(r"\b([A-Za-z]+):\s+([A-Z][^,.;:\n]{0,60})")
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
    """A crude, consistent stem: lower case, one of the endings -ation, -ing, -ed, -es, -s
    removed when four letters remain, then a final -e (``departing``/``depart``,
    ``scheduled``/``schedule``, ``confirmation``/``confirmed`` share a stem)."""
    w = word.lower()
    for suffix in ("ation", "ing", "ed", "es", "s"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 4 and not w.endswith("ss"):
            w = w[:-len(suffix)]
            break
    return w[:-1] if len(w) > 4 and w.endswith("e") else w


def content_terms(text: str) -> list[str]:
    """The text's words minus stop words, in order, de-duplicated by stem, case kept."""
    seen: dict[str, str] = {}
    for w in _WORD.findall(text):
        if _is_term(w) and stem(w) not in seen:
            seen[stem(w)] = w
    return list(seen.values())


def key_terms(text: str) -> list[str]:
    """Like :func:`content_terms`, but a number of one or two digits is joined to the word
    before it (``Phase 1``, ``Room 4``): alone it would match any stray digit."""
    words = _WORD.findall(text)
    out: list[str] = []
    for i, w in enumerate(words):
        if not _is_term(w):
            continue
        if w.isdigit() and len(w) <= 2 and out and i > 0 and out[-1] == words[i - 1]:
            out[-1] = f"{words[i - 1]} {w}"
        elif all(stem(w) != stem(o) for o in out):
            out.append(w)
    return out


def contains_term(text: str, term: str) -> bool:
    """Whether ``text`` holds ``term``: a phrase as consecutive words (case-insensitive), a
    single word by stem."""
    if " " in term:
        pattern = r"\b" + r"\W+".join(re.escape(p) for p in term.lower().split()) + r"\b"
        return re.search(pattern, text.lower()) is not None
    return stem(term) in term_set(text)


def _is_term(word: str) -> bool:
    return word.lower() not in STOP_WORDS and (len(word) > 1 or word.isdigit())


def term_set(text: str) -> set[str]:
    """Stems of the text's content words (stop words and single letters left out)."""
    return {stem(w) for w in _WORD.findall(text) if _is_term(w)}


def _place_candidates(sentence: str, labels: set[str] = frozenset()) -> list[tuple[int, str]]:
    """Phrases after "in"/"at" (capitalised, or starting with "the"), and the value of a
    ``Label: value`` pair whose label is one of ``labels`` (stems; "Hotel: Omni Hotel")."""
    out = [(m.start(2), m.group(2).strip()) for m in _LABELLED.finditer(sentence)
           if stem(m.group(1)) in labels]
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


def candidates(qtype: str, sentence: str, labels: set[str] = frozenset()) -> list[tuple[int, str]]:
    """(position, value) of every value of type ``qtype`` in ``sentence``; ``labels`` are
    the stems of the nouns the question asks for (a place may be stated as ``Hotel: ...``)."""
    if qtype == "place":
        return _place_candidates(sentence, labels)
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
    labels = {stem(m.group(1)) for m in _ASKED_NOUN.finditer(question)}
    best: tuple[tuple[int, int, int], str, int] | None = None
    for si, sent in enumerate(sentences(text)):
        words = [(m.start(), stem(m.group(0))) for m in _WORD.finditer(sent)]
        for pos, value in candidates(qtype, sent, labels):
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
