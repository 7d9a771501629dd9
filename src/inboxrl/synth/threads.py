"""Write fact families and background threads into a ``Mailbox`` and derive scenarios.

``add_family`` writes a family's members (some as replies to a request, quoting it), may
forward the newest member, and turns members into ``Scenario`` objects with a ``FactInfo``
that names the family's distractors. ``add_background`` writes a thread of chatter with
``Re:`` replies quoting earlier text and occasional ``FW:`` forwards; background mail states
no fact a question asks about.
"""
from __future__ import annotations

from dataclasses import dataclass

from inboxrl.email.types import Email, Scenario
from inboxrl.synth import vocab as V
from inboxrl.synth.facts import Family, Member
from inboxrl.synth.world import Mailbox, Person, iso_day, pick

P_SCENARIO_NEWEST = 0.2  # the newest member has only older distractors: an easier question
P_REQUEST = 0.35
P_FORWARD = 0.4


@dataclass
class FactInfo:
    """Why a scenario is hard: the distractor emails that share its keywords.

    ``distractor_ids`` are messages in the same inbox that contain every word of
    ``keywords`` and state ``distractor_values`` (same kind of value, different value) instead
    of the scenario's answer.
    """

    scenario_id: str
    kind: str
    qtype: str
    keywords: list[str]
    distractor_ids: list[str]
    distractor_values: list[str]


def _request(mb: Mailbox, m: Member) -> Email:
    asker = m.to[0]
    body = mb.letter(asker, m.sender, [f"Quick question: {m.request}?",
                                       "I need it for the file this week."])
    return mb.add(m.day - mb.rng.randint(1, 4), m.topic or m.subject, asker, [m.sender], body)


def _write_member(mb: Mailbox, m: Member, budget: int) -> tuple[Email, int]:
    """Write ``m`` (as a reply to a request when drawn and affordable); emails used."""
    if m.request and budget >= 2 and m.sender is not mb.owner and mb.rng.random() < P_REQUEST:
        req = _request(mb, m)
        body = mb.letter(m.sender, m.to[0], m.lines) + "\n\n" + mb.quote(req)
        return mb.add(m.day, f"Re: {req.subject}", m.sender, m.to, body, m.cc), 2
    body = mb.letter(m.sender, m.to[0], m.lines)
    return mb.add(m.day, m.subject, m.sender, m.to, body, m.cc), 1


def _forward(mb: Mailbox, email: Email, day: int) -> Email:
    sender = pick(mb.rng, mb.colleagues)
    body = (f"{pick(mb.rng, V.FORWARD_LINES)}\n\n{sender.first}\n\n"
            f"{mb.quote(email, forward=True)}")
    return mb.add(day, f"FW: {email.subject}", sender, [mb.owner], body)


def add_family(mb: Mailbox, fam: Family, budget: int, next_id,
               scenarios: list[Scenario], facts: list[FactInfo]) -> int:
    """Write ``fam`` using at most ``budget`` emails (>= its member count); return the count.

    ``next_id()`` returns the next scenario id. Scenarios go to ``scenarios`` and their
    distractor descriptions to ``facts``.
    """
    r, members = mb.rng, fam.members
    n = len(members)
    chosen = [i < n - 1 or r.random() < P_SCENARIO_NEWEST for i in range(n)]
    emails, used = [], 0
    for i, m in enumerate(members):
        email, k = _write_member(mb, m, budget - used - (n - 1 - i))
        emails.append(email)
        used += k
    extra: list[tuple[Email, int]] = []  # forwarded copies: (email, member index)
    last_day = max(m.day for m in members)
    if not chosen[-1] and used < budget and r.random() < P_FORWARD:
        fw_day = members[-1].day + r.randint(1, 20)
        extra.append((_forward(mb, emails[-1], fw_day), n - 1))
        last_day = max(last_day, fw_day)
        used += 1
    query_date = iso_day(last_day + r.randint(1, 30))
    for i, m in enumerate(members):
        if not chosen[i]:
            continue
        qtype = pick(r, sorted(m.questions))
        sid = next_id()
        scenarios.append(Scenario(
            id=sid, question=m.questions[qtype], answer=m.answers[qtype],
            message_ids=[emails[i].message_id], inbox_address=mb.owner.address,
            query_date=query_date, how_realistic=round(r.uniform(0.6, 0.95), 2),
            split=mb.world.split_of(mb.inbox)))
        others = [j for j in range(n) if j != i]
        facts.append(FactInfo(
            sid, fam.kind, qtype, list(fam.keywords),
            [emails[j].message_id for j in others] + [e.message_id for e, _ in extra],
            [members[j].answers[qtype] for j in others] + [members[j].answers[qtype]
                                                          for _, j in extra]))
    return used


def _chatter(mb: Mailbox) -> tuple[str, list[str]]:
    r = mb.rng
    subject, lines = pick(r, V.CHATTER)
    f = dict(p=pick(r, mb.partners).name, j=f"Project {pick(r, mb.world.projects)}",
             c=pick(r, V.CITIES))
    return subject.format(**f), [s.format(**f) for s in lines]


def _starter(mb: Mailbox) -> tuple[Person, list[Person]]:
    r, owner = mb.rng, mb.owner
    x = r.random()
    if x < 0.25:
        return owner, r.sample(mb.colleagues, r.randint(1, 2))
    if x < 0.35 and mb.peers:
        return pick(r, mb.peers), [owner]
    if x < 0.5:
        return pick(r, pick(r, mb.partners).contacts), [owner]
    if x < 0.58:
        return pick(r, mb.colleagues), [mb.world.all_staff]
    return pick(r, mb.colleagues), [owner] + ([pick(r, mb.colleagues)] if x > 0.9 else [])


def add_background(mb: Mailbox, budget: int) -> int:
    """Write one chatter thread of 1..4 emails (at most ``budget``); return the count."""
    r = mb.rng
    subject, lines = _chatter(mb)
    sender, to = _starter(mb)
    day = r.randrange(0, 725)
    first = to[0] if to[0] is not mb.world.all_staff else None
    prev = mb.add(day, subject, sender, to, mb.letter(sender, first, lines))
    length = min(budget, pick(r, (1, 1, 1, 2, 2, 3, 4)))
    a, b = sender, (to[0] if first is not None else mb.owner)
    for _ in range(length - 1):
        day += r.randint(0, 2)
        if r.random() < 0.12:
            fw_to = mb.owner if a is not mb.owner else pick(r, mb.colleagues)
            body = f"{pick(r, V.FORWARD_LINES)}\n\n{mb.quote(prev, forward=True)}"
            prev = mb.add(day, f"FW: {prev.subject}", a, [fw_to], body)
        else:
            a, b = b, a
            body = mb.letter(a, b, [pick(r, V.REPLY_LINES)]) + "\n\n" + mb.quote(prev)
            subj = prev.subject if prev.subject.startswith("Re: ") else f"Re: {prev.subject}"
            prev = mb.add(day, subj, a, [b], body)
    return length
