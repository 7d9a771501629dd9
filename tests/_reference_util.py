"""A hand-built inbox for the reference agent and SFT tests: three near-identical invoices (one
answers :data:`QUESTION`) and a distractor, all in one mailbox."""
from __future__ import annotations

import pytest

from inboxrl.email.store import EmailStore
from inboxrl.email.store_build import build_store
from inboxrl.email.types import Email, Scenario

ME = "pat@corp.com"
RECORDS = [
    (Email("<q1@x>", "2001-02-10 09:00:00", "Harbor Point invoice - storage, Q1 2001", "ar@harbor.com", [ME], [], [],
           "Attached is the storage invoice for Q1 2001. The amount due is $31,250, payable by May 1, 2001."), [ME]),
    (Email("<q2@x>", "2001-05-10 09:00:00", "Harbor Point invoice - storage, Q2 2001", "ar@harbor.com", [ME], [], [],
           "Attached is the storage invoice for Q2 2001. The amount due is $44,900, payable by August 1, 2001."), [ME]),
    (Email("<q3@x>", "2001-08-10 09:00:00", "Harbor Point invoice - storage, Q3 2001", "ar@harbor.com", [ME], [], [],
           "Attached is the storage invoice for Q3 2001. The amount due is $27,730, payable by November 1, 2001."), [ME]),
    (Email("<chat@x>", "2001-08-11 09:00:00", "Lunch", "bo@corp.com", [ME], [], [], "Lunch at noon?"), [ME]),
]
QUESTION = "What was the amount due on the Q1 2001 storage invoice from Harbor Point?"


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "emails.db"
    build_store(path, RECORDS, progress=False)
    with EmailStore(path) as s:
        yield s


def scenario(question=QUESTION, answer="$31,250", ids=("<q1@x>",)):
    return Scenario("t1", question, answer, list(ids), ME, "2001-12-01")
