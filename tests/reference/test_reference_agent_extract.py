"""Generic answer extraction used by the reference agent (hand-written texts, not synth's)."""
import pytest

from inboxrl.reference.answer_extract import answer_type, contains_term, extract_answer, key_terms, stem


@pytest.mark.parametrize("question, qtype", [
    ("What time does the board call start?", "time"),
    ("When is the audit?", "date"),
    ("By what date must the vendor finish the work?", "date"),
    ("Where will the offsite be held?", "place"),
    ("Which hotel did Sam book?", "place"),
    ("What gas volume did we sell to Acme?", "quantity"),
    ("How much was the Acme invoice?", "money"),
    ("What price did Acme quote?", "money"),
    ("What is the confirmation code for Anna Price's trip?", "code"),  # Price is a name
    ("Which cost center do we charge?", "code"),
    ("Who approved the deal?", "name"),
    ("Why is the sky blue?", "text"),
])
def test_answer_type(question, qtype):
    assert answer_type(question) == qtype


TEXT = ("Hi Sam,\n\nThanks for the call yesterday. The board call moved to Friday, June 8, 2001 "
        "at 2:30 PM in Conference Room 9. Separately, Acme invoice AC-7781 came in: the total is "
        "$12,400.50, due July 1, 2001. Acme also quoted $3.10/MMBtu for 15,000 MMBtu/day. "
        "Your confirmation code is QX7TZ2 and you stay at the Hotel Lumiere.\n\nBest,\nDana Reyes")


@pytest.mark.parametrize("question, value", [
    ("What time does the board call start?", "2:30 PM"),
    ("On what date is the board call?", "June 8, 2001"),
    ("When is the Acme invoice due?", "July 1, 2001"),
    ("Where is the board call?", "Conference Room 9"),
    ("What is the total of the Acme invoice?", "$12,400.50"),
    ("What price did Acme quote?", "$3.10/MMBtu"),
    ("What volume did Acme quote?", "15,000 MMBtu/day"),
    ("What is the Acme invoice number?", "AC-7781"),
    ("What is my confirmation code?", "QX7TZ2"),
    ("Which hotel do I stay at?", "the Hotel Lumiere"),
])
def test_extract_answer(question, value):
    found = extract_answer(question, TEXT)
    assert found is not None and found.value == value


def test_extract_answer_none_without_a_value_of_the_type():
    assert extract_answer("How much was the invoice?", "No numbers here at all.") is None
    assert extract_answer("Why is the sky blue?", TEXT) is None


def test_question_words_are_not_answers():
    # "March 2001" in the question must not be taken as the volume asked for
    text = "This confirms the deal for March 2001 delivery. Volume is 400 MWh per hour."
    assert extract_answer("What volume was agreed for March 2001 delivery?", text).value == "400 MWh per hour"


def test_key_terms_and_contains():
    assert key_terms("What budget was approved for Phase 1 of Project Red Glacier?") == \
        ["budget", "approved", "Phase 1", "Project", "Red", "Glacier"]
    assert contains_term("approved for Phase 1 of", "Phase 1")
    assert not contains_term("approved for Phase 12 and 1 more", "Phase 1")
    assert contains_term("Departing on Monday", "depart")
    assert stem("scheduled") == stem("schedule") and stem("invoices") == stem("invoice")
