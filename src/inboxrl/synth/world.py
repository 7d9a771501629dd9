"""The fictional company behind a synthetic corpus, and the per-inbox mail writer.

``build_world(seed, ...)`` draws the company, its people, partner firms, projects and
the inbox owners (with their train/test split) from ``random.Random`` seeded by a string
derived from ``seed`` only, so the same seed always gives the same world. ``Mailbox``
writes the messages of one inbox with its own seeded ``Random``; inboxes are independent,
which lets a corpus be regenerated inbox by inbox without holding it in memory.
"""
from __future__ import annotations

import datetime as _dt
import functools
import random
from dataclasses import dataclass, field

from inboxrl.email.types import Email
from inboxrl.synth import vocab as V

VERSION = "synthetic-v1"
START = _dt.date(2000, 1, 3)  # a Monday; day 0 of the corpus
SPAN_DAYS = 730  # about two years of mail
_START_ORD = START.toordinal()
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    address: str
    title: str
    org: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass(frozen=True)
class Partner:
    name: str
    domain: str
    contacts: tuple[Person, ...]

    @property
    def short(self) -> str:
        """The first word of the firm's name (``Kestrel`` for ``Kestrel Power``)."""
        return self.name.split()[0]


@dataclass
class World:
    seed: int
    company: str
    domain: str
    staff: list[Person]  # people who are not inbox owners
    owners: list[Person]  # one per inbox, index = inbox number
    test_inboxes: frozenset[int]
    partners: list[Partner]
    projects: list[str]
    travel_desk: Person
    all_staff: Person | None = None  # the company-wide mailing list
    budgets: list[int] = field(default_factory=list)  # emails per inbox

    def split_of(self, inbox: int) -> str:
        return "test" if inbox in self.test_inboxes else "train"


def day_date(day: int) -> _dt.date:
    """The calendar date of corpus day ``day``."""
    return _dt.date.fromordinal(_START_ORD + day)


@functools.lru_cache(maxsize=4096)
def iso_day(day: int) -> str:
    """``YYYY-MM-DD`` of corpus day ``day``."""
    return day_date(day).isoformat()


def pick(rng: random.Random, seq):
    """``rng.choice(seq)`` with one ``rng.random()`` call (faster; same determinism)."""
    return seq[int(rng.random() * len(seq))]


@functools.lru_cache(maxsize=4096)
def long_date(day: int) -> str:
    """``March 14, 2001`` for corpus day ``day``."""
    d = day_date(day)
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"


def _person(rng: random.Random, first: str, last: str, domain: str, org: str,
            taken: set[str]) -> Person:
    local = f"{first}.{last}".lower()
    k = 2
    while f"{local}@{domain}" in taken:
        local = f"{first}.{last}{k}".lower()
        k += 1
    address = f"{local}@{domain}"
    taken.add(address)
    dept, titles = V.DEPARTMENTS[rng.randrange(len(V.DEPARTMENTS))]
    return Person(first, last, address, f"{rng.choice(titles)}, {dept}", org)


def _split_budget(rng: random.Random, total: int, parts: int) -> list[int]:
    """``parts`` positive integers summing to ``total``, varying by about ±40 %."""
    weights = [rng.uniform(0.6, 1.4) for _ in range(parts)]
    scale = total / sum(weights)
    budgets = [max(1, int(w * scale)) for w in weights]
    i = 0
    while sum(budgets) != total:
        step = 1 if sum(budgets) < total else -1
        if step > 0 or budgets[i % parts] > 1:
            budgets[i % parts] += step
        i += 1
    return budgets


def default_num_inboxes(num_emails: int) -> int:
    """``round(sqrt(n / 3) / 1.6)`` clamped to [4, 150] (Enron had 150 mailboxes): 5 inboxes
    for 200 emails, 16 for 2,000, 51 for 20,000, 150 from about 190,000."""
    return max(4, min(150, round((num_emails / 3) ** 0.5 / 1.6)))


def build_world(seed: int, num_emails: int, num_inboxes: int,
                test_fraction: float) -> World:
    """The company, people, partners, projects, inbox owners and per-inbox budgets."""
    if num_inboxes < 2:
        raise ValueError("num_inboxes must be at least 2 (train and test inboxes are disjoint)")
    if num_emails < 20 * num_inboxes:
        raise ValueError(f"num_emails={num_emails} is too small for {num_inboxes} inboxes "
                         f"(need at least 20 emails per inbox)")
    rng = random.Random(f"{VERSION}:{seed}:world")
    company, domain = V.COMPANIES[rng.randrange(len(V.COMPANIES))]
    taken: set[str] = set()
    n_people = num_inboxes + max(40, min(1500, num_inboxes * 6))
    pairs = [(f, l) for f in V.FIRST_NAMES for l in V.LAST_NAMES]
    people = [_person(rng, f, l, domain, company, taken)
              for f, l in rng.sample(pairs, n_people)]
    owners, staff = people[:num_inboxes], people[num_inboxes:]
    n_test = min(num_inboxes - 1, max(1, round(num_inboxes * test_fraction)))
    test = frozenset(rng.sample(range(num_inboxes), n_test))
    partners = []
    for name, pdomain in V.PARTNERS:
        contacts = tuple(_person(rng, f, l, pdomain, name, taken)
                         for f, l in rng.sample(pairs, rng.randint(2, 4)))
        partners.append(Partner(name, pdomain, contacts))
    projects = [f"{a} {n}" for a in V.PROJECT_ADJECTIVES for n in V.PROJECT_NOUNS]
    rng.shuffle(projects)
    desk = Person("Corporate", "Travel", f"travel.desk@{domain}", "Travel Desk", company)
    return World(seed, company, domain, staff, owners, test, partners, projects, desk,
                 all_staff=Person("All", "Employees", f"all.employees@{domain}", "", company),
                 budgets=_split_budget(rng, num_emails, num_inboxes))


class Mailbox:
    """Writes the messages of one inbox: ids, dates, signatures, owners of each record.

    ``emails`` collects ``(Email, owners)`` in creation order. Message ids are unique in
    the corpus (they carry the inbox number and a per-inbox sequence number).
    """

    def __init__(self, world: World, inbox: int):
        self.world = world
        self.inbox = inbox
        self.owner = world.owners[inbox]
        self.rng = random.Random(f"{VERSION}:{world.seed}:inbox:{inbox}")
        budget = world.budgets[inbox]
        rng = self.rng
        self.colleagues = rng.sample(world.staff, min(len(world.staff), 10 + budget // 120))
        self.partners = rng.sample(world.partners,
                                   min(len(world.partners), 6 + budget // 150))
        split = world.split_of(inbox)
        self.peers = [p for i, p in enumerate(world.owners)
                      if i != inbox and world.split_of(i) == split]
        self._owner_index = {p.address: i for i, p in enumerate(world.owners)}
        self.records: list[tuple[Email, list[str]]] = []
        self._seq = 0

    def timestamp(self, day: int) -> str:
        """A business-hours time on corpus day ``day`` as ``YYYY-MM-DD HH:MM:SS``."""
        secs = 25200 + int(self.rng.random() * 46800)  # 07:00:00 .. 19:59:59
        return f"{iso_day(day)} {secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"

    def signature(self, p: Person) -> str:
        return f"{p.name}\n{p.title}\n{p.org}"

    def letter(self, sender: Person, to: Person | None, lines: list[str]) -> str:
        """Greeting, the content lines, a closing and the sender's signature."""
        r = self.rng
        parts = []
        if to is not None:
            parts.append(pick(r, V.GREETINGS).format(f=to.first))
        parts.append(" ".join(lines))
        parts.append(f"{pick(r, V.CLOSINGS)}\n{self.signature(sender)}")
        return "\n\n".join(parts)

    def add(self, day: int, subject: str, sender: Person, to: list[Person],
            body: str, cc: list[Person] = (), when: str | None = None) -> Email:
        """Create one message, record it with its owners and return it."""
        self._seq += 1
        when = when or self.timestamp(day)
        domain = sender.address.rsplit("@", 1)[1]
        mid = (f"<{when[:10].replace('-', '')}{int(self.rng.random() * 1e6):06d}."
               f"{self.inbox:03d}{self._seq:06d}.JavaMail@{domain}>")
        email = Email(message_id=mid, date=when, subject=subject,
                      from_address=sender.address, to=[p.address for p in to],
                      cc=[p.address for p in cc], body=body)
        owners = [self.owner.address]
        for addr in (email.from_address, *email.to, *email.cc):
            if addr != self.owner.address and addr in self._owner_index:
                owners.append(addr)
        self.records.append((email, owners))
        return email

    def quote(self, email: Email, forward: bool = False) -> str:
        """An Outlook-style quoted copy of ``email`` for a reply or a forward."""
        head = "---------- Forwarded message ----------" if forward else "-----Original Message-----"
        return (f"{head}\nFrom: {email.from_address}\nSent: {email.date}\n"
                f"To: {', '.join(email.to)}\nSubject: {email.subject}\n\n{email.body}")
