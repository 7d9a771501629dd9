"""is_idk, normalize and the normalised-match judge."""
import pytest

from inboxrl.email.judge import LLMJudge, NormalizedJudge, is_idk, make_judge, normalize, token_f1


@pytest.mark.parametrize("text", [
    "I don't know", "i dont know", "I DON'T KNOW.", "I don\u2019t know", "\"I don't know\"",
    "I do not know", "  I do not know!  ", "'I don`t know'", "I  don't\tknow",
])
def test_is_idk_variants(text):
    assert is_idk(text)


@pytest.mark.parametrize("text", [
    "I don't know the answer", "I don't knoww", "Maybe 42", "", "idk", "I dont know 42",
    None, 42, "I know",
])
def test_is_idk_rejects(text):
    assert not is_idk(text)


@pytest.mark.parametrize("raw, expected", [
    ("$48,200.00", "48200"),
    ("48,200", "48200"),
    ("$48,200", "48200"),
    ("48200", "48200"),
    ("$0.50", "0.5"),
    ("3.50%", "3.5 percent"),
    ("1,000,000", "1000000"),
    ("March 14, 2001", "2001-03-14"),
    ("Mar. 14th, 2001", "2001-03-14"),
    ("14 March 2001", "2001-03-14"),
    ("3/14/2001", "2001-03-14"),
    ("2001-3-14", "2001-03-14"),
    ("Sept 3, 2001", "2001-09-03"),
    ("INV-0047", "inv 0047"),
    ("The meeting is in Houston, TX.", "meeting is in houston tx"),
    ("O\u2019Brien", "o brien"),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_normalize_keeps_impossible_dates_and_phone_numbers():
    assert normalize("13/45/2001") == "13 45 2001"
    assert normalize("713-853-1234") == "713 853 1234"


def test_token_f1_hand_computed():
    # pred 4 tokens, ref 2, overlap 2: p = 0.5, r = 1 -> f1 = 2/3
    assert token_f1("a b c d", "a b") == pytest.approx(2 / 3)
    assert token_f1("x", "y") == 0.0


@pytest.mark.parametrize("reference, answer, correct", [
    ("$48,200", "The total was 48200 dollars.", True),
    ("$48,200", "$48,200.00", True),
    ("$48,200", "482,000", False),
    ("$48,200", "$48,201", False),
    ("12", "120", False),  # token boundaries: 12 is not in 120
    ("March 14, 2001", "It is on 2001-03-14.", True),
    ("March 14, 2001", "March 15, 2001", False),
    ("Houston", "houston", True),
    ("Conference Room 4B", "conference room 4b on the 3rd floor", True),
    ("Westin Galleria hotel in Houston", "Westin Galleria in Houston", True),  # f1 = 8/9
    ("Westin Galleria hotel in Houston", "Hyatt Regency", False),
    ("PO-88213", "po 88213", True),
    ("PO-88213", "", False),
])
def test_normalized_judge(reference, answer, correct):
    v = NormalizedJudge().judge("q?", reference, answer)
    assert v.error is None and v.correct is correct


def test_normalized_judge_empty_reference_is_an_error_not_a_verdict():
    v = NormalizedJudge().judge("q?", "!!!", "anything")
    assert v.correct is None and "empty" in v.error


def test_make_judge():
    assert isinstance(make_judge(), NormalizedJudge)
    assert isinstance(make_judge("llm", base_url="http://127.0.0.1:1/v1", model="m"), LLMJudge)
    with pytest.raises(ValueError):
        make_judge("llm", model="m")
    with pytest.raises(ValueError):
        make_judge("exact")
