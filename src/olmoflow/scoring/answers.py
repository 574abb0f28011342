"""Answer extraction and normalisation for generative tasks (GSM8K, MATH, Minerva) and the math verifiers.

Extraction: the last number (GSM8K), the last ``\\boxed{}`` and Minerva's "The final answer is
$X$" (MATH). Normalisation: light LaTeX clean-up, Hendrycks' ``strip_string`` and Minerva's
``normalize_final_answer`` (both as in lm-eval's ``hendrycks_math`` / ``minerva_math`` utils).
Equality lives in :mod:`olmoflow.scoring.math`. Standard library only.
"""

from __future__ import annotations

import re

__all__ = ["extract_last_number", "extract_boxed", "extract_final_answer", "normalize_latex",
           "strip_string", "normalize_final_answer"]

_NUM_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def extract_last_number(text: str) -> str | None:
    """The last number in ``text`` (commas dropped, a trailing period ignored), or None."""
    found = _NUM_RE.findall(text)
    if not found:
        return None
    return found[-1].replace(",", "").rstrip(".")


def extract_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` (balanced braces), or None."""
    start = text.rfind("\\boxed")
    if start == -1:
        start = text.rfind("\\fbox")
        if start == -1:
            return None
    if text.startswith("\\boxed ", start):  # ``\boxed 5$``: up to the closing ``$`` (as lm-eval/OLMES)
        return text[start + 7:].split("$")[0].strip()
    i = text.find("{", start)
    if i == -1:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1: j].strip()
    return None


# Minerva's "Final Answer: The final answer is $X$. I hope it is correct." (the answer may contain
# periods: "$3.5$", "12.25"), up to "I hope", the end of the line or the end of the text
_FINAL_RE = re.compile(r"final answer is(.*?)(?:I hope it is correct|\n|$)", re.IGNORECASE)


def extract_final_answer(text: str) -> str | None:
    """Minerva style: ``\\boxed{X}`` or "The final answer is $X$", else the last number."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    m = _FINAL_RE.findall(text)
    if m:
        ans = m[-1].strip().rstrip(".").strip().strip("$").strip()
        if ans:
            return ans
    return extract_last_number(text)


def normalize_latex(s: str) -> str:
    """Light LaTeX normalisation for answer comparison (spaces, \\left/\\right, $, dfrac)."""
    s = s.strip().strip("$").rstrip(".")
    for a, b in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("dfrac", "frac"),
                 ("tfrac", "frac"), ("^\\circ", ""), ("^{\\circ}", ""), ("\\%", ""), ("%", "")):
        s = s.replace(a, b)
    return re.sub(r"\s+", "", s)


# ---- Hendrycks et al. (2021) MATH normalisation (lm-eval hendrycks_math/utils.py strip_string)
def _fix_fracs(string: str) -> str:
    substrs = string.split("\\frac")
    new_str = substrs[0]
    for substr in substrs[1:]:
        new_str += "\\frac"
        if substr[:1] == "{":
            new_str += substr
            continue
        if len(substr) < 2:
            return string
        a, b, post = substr[0], substr[1], substr[2:]
        new_str += "{" + a + "}{" + b + "}" + post if b != "{" else "{" + a + "}" + b + post
    return new_str


def _fix_a_slash_b(string: str) -> str:
    parts = string.split("/")
    if len(parts) != 2:
        return string
    a, b = int(parts[0]), int(parts[1])  # ValueError -> raw comparison, as the reference does
    return f"\\frac{{{a}}}{{{b}}}" if string == f"{a}/{b}" else string


def _fix_sqrt(string: str) -> str:
    splits = string.split("\\sqrt")
    out = splits[0]
    for split in splits[1:]:
        out += "\\sqrt" + split if split[0] == "{" else "\\sqrt{" + split[0] + "}" + split[1:]
    return out


def strip_string(string: str) -> str:
    """Hendrycks' ``strip_string``; raises ``ValueError``/``IndexError`` on forms it cannot handle."""
    s = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in s:  # units on the right
        splits = s.split("\\text{ ")
        if len(splits) != 2:
            raise ValueError("several \\text{ } units")
        s = splits[0]
    s = s.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if len(s.split("=")) == 2 and len(s.split("=")[0]) <= 2:  # "k = 5" -> "5"
        s = s.split("=")[1]
    s = _fix_sqrt(s).replace(" ", "")
    s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


# ---- Minerva (Lewkowycz et al. 2022, appendix D) normalize_final_answer, as in lm-eval minerva_math/utils.py
_SUBSTITUTIONS = [("an ", ""), ("a ", ""), (".$", "$"), ("\\$", ""), (r"\ ", ""), (" ", ""), ("mbox", "text"),
                  (",\\text{and}", ","), ("\\text{and}", ","), ("\\text{m}", "\\text{}")]
_REMOVED_EXPRESSIONS = [
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", "\\ldots", "sue",
    "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges",
    "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2",
    "\\text{}^3", "\\text{\n}", "\\text{}", r"\mathrm{th}", r"^\circ", r"^{\circ}", r"\;", r",\!", "{,}", '"',
    "\\dots",
]


def normalize_final_answer(final_answer: str) -> str:
    """Minerva's answer normalisation: right of the last ``=``, units and ``\\text{}`` removed,
    ``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt2`` -> ``\\sqrt{2}``, ``$`` and thousands commas dropped."""
    s = final_answer.split("=")[-1]
    for expr in _REMOVED_EXPRESSIONS:  # unit words while whitespace still delimits them
        if expr.isalpha():
            s = re.sub(rf"(?<!\\)\b{expr}\b", "", s)
    for before, after in _SUBSTITUTIONS:
        s = s.replace(before, after)
    for expr in _REMOVED_EXPRESSIONS:
        if expr.isalpha():  # glued units, skipping LaTeX command names ("\left" keeps its "ft")
            segments = re.split(r"(\\[a-zA-Z]+)", s)
            for i in range(0, len(segments), 2):
                segments[i] = segments[i].replace(expr, "")
            s = "".join(segments)
        else:
            s = s.replace(expr, "")
    s = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", s)
    s = re.sub(r"(\\text\{)(.*?)(\})", "\\2", s)
    s = re.sub(r"(\\textbf\{)(.*?)(\})", "\\2", s)
    s = re.sub(r"(\\overline\{)(.*?)(\})", "\\2", s)
    s = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", s)
    s = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", s)
    s = re.sub(r"(sqrt)(\[[^\]]*\])(\w)", "\\1\\2{\\3}", s)
    s = re.sub(r"(sqrt)(?!\[)([^{])", "sqrt{\\2}", s)
    s = s.replace("$", "")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+", s):
        s = s.replace(",", "")
    return s
