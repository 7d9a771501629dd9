"""Fact families: groups of emails that share keywords and differ in one specific.

A family is, for example, the storage invoices one partner sent for three different
quarters. Every member states its own concrete values (amount, invoice number, due date);
a question names the family's key *and* the member's specific ("the Q3 2001 storage
invoice from Kestrel Power"), so only reading the right member answers it, while a keyword
search also returns the other members (the distractors), usually newer ones.

Each ``make_*(mb, k)`` function draws one family of at most ``k`` members for a ``Mailbox``;
the caller (``synth.generate_inbox``) rejects a family whose key is already used in that inbox
(so the question's specifics identify one email) or whose values overlap
(``values_distinct``), and draws again.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field

from inboxrl.synth import vocab as V
from inboxrl.synth.world import MONTHS, Mailbox, Person, START, WEEKDAYS, day_date, long_date, pick

_CODE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


@dataclass
class Member:
    """One fact-bearing email of a family, before it is written."""

    day: int
    subject: str
    lines: list[str]
    sender: Person
    to: list[Person]
    cc: list[Person] = field(default_factory=list)
    questions: dict[str, str] = field(default_factory=dict)  # type -> question text
    answers: dict[str, str] = field(default_factory=dict)  # type -> answer value
    request: str = ""  # what the recipient asked for, when the email answers a request
    topic: str = ""  # the request's subject: the family key and specific, no values


@dataclass
class Family:
    kind: str
    key: tuple
    keywords: list[str]  # words every member contains (search terms a user would try)
    members: list[Member]  # oldest first


def fold(text: str) -> str:
    """Lower-case alphanumerics only: the form in which answer values must not overlap."""
    return _NON_ALNUM.sub("", text.lower())


def values_distinct(members: list[Member]) -> bool:
    """True when, for every answer type, no member's value contains another's (folded)."""
    for qtype in members[0].answers:
        folded = [fold(m.answers[qtype]) for m in members]
        for i, a in enumerate(folded):
            for j, b in enumerate(folded):
                if i != j and a in b:
                    return False
    return True


def money(mb: Mailbox, lo: int, hi: int, step: int) -> str:
    return f"${mb.rng.randrange(lo, hi, step):,}"


def code(mb: Mailbox, prefix: str) -> str:
    return f"{prefix}-{mb.rng.randint(10000, 99999)}"


def conf_code(mb: Mailbox) -> str:
    return "".join(pick(mb.rng, _CODE_CHARS) for _ in range(6))


def clock(mb: Mailbox) -> str:
    h = mb.rng.randint(8, 16)
    return f"{(h - 1) % 12 + 1}:{pick(mb.rng, ('00', '15', '30', '45'))} {'AM' if h < 12 else 'PM'}"


def day_of(date: _dt.date) -> int:
    return (date - START).days


def _ordered_days(mb: Mailbox, k: int, lo: int, hi: int, gap: int) -> list[int]:
    """``k`` increasing days in ``[lo, hi)`` at least ``gap`` apart (fewer if no room)."""
    days = sorted(mb.rng.sample(range(lo, hi), k))
    for i in range(1, k):
        days[i] = max(days[i], days[i - 1] + gap)
    return [d for d in days if d < hi]


def _text(mb: Mailbox, family: str, /, **fields) -> str:
    """One phrasing of ``family`` (``synth_vocab.FACT_TEXT``) with the values filled in."""
    return pick(mb.rng, V.FACT_TEXT[family]).format(**fields)


def _contact(mb: Mailbox, partner) -> Person:
    return pick(mb.rng, partner.contacts)


def make_invoice(mb: Mailbox, k: int) -> Family:
    r = mb.rng
    partner, service = pick(r, mb.partners), pick(r, V.SERVICES)
    quarters = sorted(r.sample(range(7), k))  # Q1 2000 .. Q3 2001
    members = []
    for q in quarters:
        year, qn = 2000 + q // 4, q % 4 + 1
        end = _dt.date(year, 3 * qn, 28) + _dt.timedelta(days=3)
        day = day_of(end) + r.randint(3, 25)
        label, months = f"Q{qn} {year}", f"{MONTHS[3 * qn - 3]} through {MONTHS[3 * qn - 1]}"
        amount, inv, due = money(mb, 8_000, 950_000, 10), code(mb, "INV"), long_date(day + 30)
        text = _text(mb, "invoice", inv=inv, service=service, company=mb.world.company,
                     months=months, label=label, amount=amount, due=due)
        m = Member(day, f"{partner.name} invoice {inv} - {service}, {label}", [text],
                   _contact(mb, partner), [mb.owner])
        m.questions = {
            "amount": f"What was the amount due on the {label} {service} invoice from {partner.name}?",
            "number": f"What is the invoice number of {partner.name}'s {service} invoice for {label}?",
            "due": f"By what date is the {label} {service} invoice from {partner.name} due?"}
        m.answers = {"amount": amount, "number": inv, "due": due}
        m.request = f"could you send over the {service} invoice for {label}"
        m.topic = f"{partner.name} {service} invoice, {label}"
        members.append(m)
    return Family("invoice", (partner.name, service), [partner.short, "invoice"], members)


def make_meeting(mb: Mailbox, k: int) -> Family:
    r = mb.rng
    project = pick(r, mb.world.projects)
    kinds = r.sample(V.MEETING_TYPES, k)
    organizer = pick(r, mb.colleagues)
    days = _ordered_days(mb, k, 5, 690, 20)
    members = []
    for kind, day in zip(kinds, days):
        when = day + r.randint(3, 21)
        date, time = long_date(when), clock(mb)
        weekday = WEEKDAYS[day_date(when).weekday()]
        place = pick(r, V.CITIES) if r.random() < 0.6 else pick(r, V.ROOMS)
        text = _text(mb, "meeting", kind=kind, project=project, weekday=weekday, date=date,
                     time=time, place=place)
        m = Member(day, f"Project {project} {kind} meeting", [text], organizer, [mb.owner],
                   [pick(r, mb.colleagues)])
        m.questions = {
            "date": f"On what date is the Project {project} {kind} meeting?",
            "place": f"Where will the {kind} meeting for Project {project} be held?",
            "time": f"What time does the {kind} meeting for Project {project} start?"}
        m.answers = {"date": date, "place": place, "time": time}
        m.request = f"when and where is the {kind} meeting for Project {project}"
        m.topic = m.subject
        members.append(m)
    return Family("meeting", (project,), [project.split()[1], "meeting"], members)


def make_deal(mb: Mailbox, k: int) -> Family:
    r = mb.rng
    partner = pick(r, mb.partners)
    commodity, unit, (plo, phi), (vlo, vhi), per = pick(r, V.COMMODITIES)
    site = pick(r, V.SITES)
    members = []
    for mi in sorted(r.sample(range(1, 24), k)):  # delivery Feb 2000 .. Dec 2001
        year, month = 2000 + mi // 12, mi % 12 + 1
        day = day_of(_dt.date(year, month, 1)) - r.randint(4, 25)
        label = f"{MONTHS[month - 1]} {year}"
        price = f"${r.uniform(plo, phi):.2f}/{unit}"
        volume = f"{r.randrange(vlo, vhi, 5 if vhi < 1000 else 500):,} {unit}{per}"
        number = code(mb, "DL")
        text = _text(mb, "deal", commodity=commodity, partner=partner.name, label=label,
                     site=site, volume=volume, price=price, number=number)
        m = Member(day, f"Confirmation: {commodity} {label} - {partner.name}", [text],
                   mb.owner if r.random() < 0.5 else pick(r, mb.colleagues), [_contact(mb, partner)])
        if m.sender is not mb.owner:
            m.cc = [mb.owner]
        m.questions = {
            "price": f"What fixed price was agreed with {partner.name} for {label} {commodity}?",
            "number": f"What is the deal number of the {label} {commodity} deal with {partner.name}?",
            "volume": f"What {commodity} volume was agreed with {partner.name} for {label} delivery?"}
        m.answers = {"price": price, "number": number, "volume": volume}
        members.append(m)
    return Family("deal", (partner.name, commodity), [partner.short, commodity.split()[-1]],
                  members)


def make_po(mb: Mailbox, k: int) -> Family:
    r = mb.rng
    vendor, item = pick(r, mb.partners), pick(r, V.EQUIPMENT)
    sites = r.sample(V.SITES, k)
    buyer = pick(r, mb.colleagues)
    members = []
    for site, day in zip(sites, _ordered_days(mb, k, 5, 680, 10)):
        po, amount = code(mb, "PO"), money(mb, 20_000, 2_500_000, 500)
        finish = long_date(day + r.randint(30, 120))
        text = _text(mb, "po", po=po, vendor=vendor.name, item=item, site=site, amount=amount,
                     finish=finish)
        m = Member(day, f"{po} - {item}, {site}", [text], buyer,
                   [mb.owner, _contact(mb, vendor)])
        m.questions = {
            "po": f"What PO number was issued to {vendor.name} for the {item} at the {site}?",
            "amount": f"What is the not-to-exceed amount of the {vendor.name} {item} PO for the {site}?",
            "finish": f"By what date must {vendor.name} finish the {item} at the {site}?"}
        m.answers = {"po": po, "amount": amount, "finish": finish}
        m.request = f"what PO number should {vendor.name} use for the {item} at the {site}"
        m.topic = f"{item}, {site}"
        members.append(m)
    return Family("po", (vendor.name, item), [vendor.short, item.split()[0]], members)


def make_travel(mb: Mailbox, k: int) -> Family:
    r = mb.rng
    traveler = mb.owner if r.random() < 0.5 else pick(r, mb.colleagues)
    city = pick(r, V.CITIES)
    hotels = r.sample(V.HOTELS, k)
    members = []
    for mi, hotel in zip(sorted(r.sample(range(1, 24), k)), hotels):
        year, month = 2000 + mi // 12, mi % 12 + 1
        depart = day_of(_dt.date(year, month, r.randint(1, 26)))
        day = depart - r.randint(6, 28)
        label, code6 = f"{MONTHS[month - 1]} {year}", conf_code(mb)
        flight = f"{pick(r, V.AIRLINES)} flight {r.randint(100, 2999)}"
        text = _text(mb, "travel", city=city, code=code6, depart=long_date(depart),
                     flight=flight, nights=r.randint(2, 5), hotel=hotel)
        m = Member(day, f"Itinerary: {traveler.name} - {city}, {label}", [text],
                   mb.world.travel_desk, [traveler] + ([mb.owner] if traveler is not mb.owner else []))
        who = "my" if traveler is mb.owner else f"{traveler.name}'s"
        m.questions = {
            "code": f"What is the confirmation code for {who} {label} trip to {city}?",
            "hotel": f"Which hotel is booked for {who} {city} trip in {label}?",
            "depart": f"What date does {who} {label} trip to {city} depart?"}
        m.answers = {"code": code6, "hotel": hotel, "depart": long_date(depart)}
        members.append(m)
    return Family("travel", (traveler.address, city), [traveler.last, city],
                  members)


def make_budget(mb: Mailbox, k: int) -> Family:
    r = mb.rng
    project = pick(r, mb.world.projects)
    pm = pick(r, mb.colleagues)
    members = []
    for phase, day in zip(V.PHASES[:k], _ordered_days(mb, k, 5, 700, 45)):
        budget, cc = money(mb, 150_000, 9_000_000, 1_000), code(mb, "CC")
        golive = long_date(day + r.randint(60, 200))
        text = _text(mb, "budget", budget=budget, phase=phase, project=project, golive=golive,
                     cc=cc)
        m = Member(day, f"Project {project} {phase} budget approved", [text], pm, [mb.owner],
                   r.sample(mb.colleagues, 2))
        m.questions = {
            "budget": f"What budget was approved for {phase} of Project {project}?",
            "golive": f"What is the target go-live date for {phase} of Project {project}?",
            "costcenter": f"Which cost center is used for Project {project} {phase}?"}
        m.answers = {"budget": budget, "golive": golive, "costcenter": cc}
        m.request = f"what budget did the committee approve for {phase} of Project {project}"
        m.topic = f"Project {project} {phase} budget"
        members.append(m)
    return Family("budget", (project,), [project.split()[1], "budget"], members)


KINDS = (make_invoice, make_meeting, make_deal, make_po, make_travel, make_budget)
