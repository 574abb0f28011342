"""Instruction-following checkers on right, wrong, malformed and adversarial responses."""

from __future__ import annotations

import pytest

from olmoflow.errors import OlmoflowError
from olmoflow.scoring import instructions
from olmoflow.scoring.instructions import CHECKERS, check, check_one, count_sentences, count_words, describe


def ok(response: str, **constraint) -> bool:
    return check_one(response, constraint)[0]


def test_word_count_relations():
    assert count_words("Don't stop: a well-known fact, 3.5 times!") == 7  # "3.5" is one word
    c = {"type": "word_count", "n": 3}
    assert ok("one two three", **c) and not ok("one two", **c) and not ok("one two three four", **c)
    assert ok("one, two... three!!", **c)  # punctuation is not a word
    assert ok("a b", type="word_count", relation="at_most", n=2) and not ok("a b c", type="word_count",
                                                                             relation="at_most", n=2)
    assert ok("a b c", type="word_count", relation="at_least", n=3) and not ok("a b", type="word_count",
                                                                                relation="at_least", n=3)
    assert ok("", type="word_count", relation="at_most", n=0) and not ok("  \n ", type="word_count", n=1)
    assert ok("- - * _ _", type="word_count", n=0)  # symbols and underscores are not words


def test_sentence_count():
    assert count_sentences("One. Two! Three?") == 3
    assert count_sentences("Pi is 3.14 and e is 2.71.") == 1  # a decimal point does not end a sentence
    assert count_sentences("No final stop") == 1 and count_sentences("...!!") == 0 and count_sentences("") == 0
    assert count_sentences("Wait... what?! Yes.") == 3
    assert ok("A. B.", type="sentence_count", n=2) and not ok("A. B. C.", type="sentence_count", n=2)
    assert ok("A.", type="sentence_count", relation="at_most", n=2)


def test_keywords_present_and_absent():
    c = {"type": "keywords_present", "keywords": ["ocean", "Deep blue"]}
    assert ok("The OCEAN is deep   blue.", **c)
    assert not ok("The oceanic trench is deep blue.", **c)  # whole words only
    assert not ok("The ocean is deep.", **c)
    a = {"type": "keywords_absent", "keywords": ["very", "thing"]}
    assert ok("Everything is fine; every day.", **a)  # 'thing' inside 'Everything' is not the word
    assert not ok("A Very nice day.", **a) and not ok("one thing", **a)
    assert check("a thing", [a])[1] == ["keywords_absent: forbidden keywords present ['thing']"]


def test_case_checks_need_a_letter():
    assert ok("all lower, 42 digits ok.", type="lowercase") and not ok("Not all lower", type="lowercase")
    assert not ok("123 !!", type="lowercase") and not ok("", type="lowercase")  # no letter: cannot be lowercase
    assert ok("ALL CAPS 42!", type="uppercase") and not ok("ALL CAPs", type="uppercase")
    assert not ok("", type="uppercase")
    assert ok("ünïcode façade", type="lowercase") and not ok("Ünïcode", type="lowercase")


def test_json_keys():
    c = {"type": "json_keys", "keys": ["name", "age"]}
    assert ok('{"name": "Ava", "age": 7, "extra": 1}', **c)
    assert ok('  ```json\n{"name": "Ava", "age": 7}\n```  ', **c)  # a fenced block is fine
    assert ok('```\n{"name": "Ava", "age": 7}\n```', **c)
    assert not ok('{"name": "Ava"}', **c)  # a key missing
    assert not ok('{"person": {"name": "Ava", "age": 7}}', **c)  # nested keys do not count
    assert not ok('[{"name": "Ava", "age": 7}]', **c)  # not an object
    assert not ok('Here you go: {"name": "Ava", "age": 7}', **c)  # text around the JSON
    assert not ok('{"name": "Ava", "age": 7', **c)  # cut off
    assert not ok("", **c)
    score, reasons = check('{"name": 1', [c])
    assert score == 0 and reasons[0].startswith("json_keys: not JSON")


def test_starts_and_ends_with():
    assert ok("  Sure. Here it is", type="starts_with", text="Sure.")
    assert not ok("sure. here", type="starts_with", text="Sure.")  # case-sensitive
    assert not ok("I am Sure.", type="starts_with", text="Sure.")
    assert ok("It ends here. Thank you.\n", type="ends_with", text="Thank you.")
    assert not ok("Thank you. Bye", type="ends_with", text="Thank you.")


def test_check_scores_the_fraction_satisfied():
    cons = [{"type": "lowercase"}, {"type": "word_count", "n": 2}, {"type": "ends_with", "text": "!"}]
    assert check("hello world!", cons) == (1.0, [])
    score, reasons = check("Hello world", cons)
    assert score == pytest.approx(1 / 3)
    assert reasons == ["lowercase: uppercase letters 'H'", "ends_with: does not end with '!'"]


def test_bad_constraints_are_one_line_errors_whatever_the_response():
    with pytest.raises(OlmoflowError, match="unknown constraint type 'rhymes'"):
        check("anything", [{"type": "lowercase"}, {"type": "rhymes"}])
    with pytest.raises(OlmoflowError, match="parameter 'n' must be a int"):
        check("", [{"type": "word_count", "n": "3"}])
    with pytest.raises(OlmoflowError, match="parameter 'n' must be a int"):
        check("x", [{"type": "word_count", "n": True}])
    with pytest.raises(OlmoflowError, match="'relation' must be one of exactly, at_most, at_least"):
        check("x", [{"type": "word_count", "relation": "about", "n": 3}])
    with pytest.raises(OlmoflowError, match="'keywords' must be a non-empty list"):
        check("x", [{"type": "keywords_present", "keywords": []}])
    with pytest.raises(OlmoflowError, match="non-empty list"):
        check("x", [])
    with pytest.raises(OlmoflowError, match="expected a mapping"):
        check("x", ["lowercase"])
    with pytest.raises(OlmoflowError, match="response must be a string"):
        check(None, [{"type": "lowercase"}])  # type: ignore[arg-type]


def test_describe_states_each_constraint():
    assert describe({"type": "word_count", "relation": "at_most", "n": 12}) == "Use at most 12 words."
    assert describe({"type": "json_keys", "keys": ["a", "b"]}) == 'Reply in JSON with keys "a", "b".'
    assert all(kind in instructions.DESCRIPTIONS for kind in CHECKERS)
    with pytest.raises(OlmoflowError, match="parameter 'text'"):
        describe({"type": "starts_with"})


def test_a_new_checker_is_one_function(monkeypatch):
    def no_digits(response, c):
        return not any(ch.isdigit() for ch in response), "has digits"

    monkeypatch.setitem(CHECKERS, "no_digits", no_digits)
    assert check("abc", [{"type": "no_digits"}]) == (1.0, [])
    assert check("a1", [{"type": "no_digits"}]) == (0.0, ["no_digits: has digits"])
