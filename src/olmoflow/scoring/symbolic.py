"""Symbolic equality of LaTeX math answers: Minerva's ``is_equiv`` without its LaTeX parser.

Minerva (and lm-eval's ``minerva_math``, OLMES' MATH ``exact_match_flex``) counts two normalised
answers equal when ``sympy.simplify(parse_latex(a) - parse_latex(b)) == 0``. sympy's
``parse_latex`` needs antlr4-python3-runtime 4.11 exactly (other versions refuse to load), so we
parse the answer forms MATH uses ourselves — numbers, letters, ``+ - * / ^ !``, ``\\frac`` and
friends, ``\\sqrt[n]{}``, ``\\pi``, Greek letters, ``\\cdot``/``\\times``/``\\div``, brackets and
implicit multiplication — straight into sympy objects. Nothing is ``eval``-ed; anything else
(commas, intervals, ``=``, ``\\infty``, ``\\%``, unknown commands) is "not parseable", which
``is_equiv`` also answers with "not equal".

Never hangs, never raises: inputs over 200 characters, deeper than 20 brackets, powers that would
build integers over ~10,000 digits or polynomials of degree over 100 are refused before sympy
sees them, and the comparison runs under a wall-clock guard (:func:`run_with_timeout`).
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["latex_to_sympy", "symbolic_equal", "run_with_timeout"]

T = TypeVar("T")

MAX_CHARS = 200  # longer answers are not parsed (MATH answers are far shorter)
MAX_DEPTH = 20  # bracket nesting
MAX_POW_BITS = 33_000  # a numeric power may build an integer of at most ~10,000 digits
MAX_DEGREE = 100  # and a symbolic power at most this degree (simplify expands)
MAX_FACTORIAL = 1000

_TOKEN_RE = re.compile(r"\\[a-zA-Z]+|\d+(?:\.\d+)?|[a-zA-Z]|[-+*/^!(){}\[\]]")
_SPACING = ("\\!", "\\,", "\\;", "\\:", "\\ ", "$")
_SKIPPED = {"\\left", "\\right", "\\displaystyle"}
_OPERATORS = {"\\cdot": "*", "\\times": "*", "\\ast": "*", "\\div": "/"}
_FRACS = {"\\frac", "\\dfrac", "\\tfrac", "\\cfrac"}
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
          "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi",
          "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega"}
_CLOSE = {"(": ")", "{": "}", "[": "]"}


class _Parser:
    """Recursive descent: expr := term (± term)*; term := unary ((* | / | implicit) unary)*;
    unary := ± unary | power; power := postfix (^ arg)?; postfix := atom !*."""

    def __init__(self, tokens: list[str], sp: Any) -> None:
        self.toks, self.i, self.depth, self.sp = tokens, 0, 0, sp

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise ValueError(f"expected {want or 'a token'}, got {tok!r}")
        self.i += 1
        return tok

    def expr(self) -> Any:
        v = self.term()
        while self.peek() in ("+", "-"):
            v = v + self.term() if self.take() == "+" else v - self.term()
        return v

    def term(self) -> Any:
        v = self.unary()
        while (tok := self.peek()) is not None:
            if tok in ("*", "/"):
                self.take()
                rhs = self.unary()
                v = v * rhs if tok == "*" else v / rhs
            elif self._starts_atom(tok):  # 2x, 2\sqrt{2}, x(x+1), \pi r
                v = v * self.power()
            else:
                break
        return v

    def unary(self) -> Any:
        if self.peek() in ("+", "-"):
            return self.unary() if self.take() == "+" else -self.unary()
        return self.power()

    def power(self) -> Any:
        base = self.postfix()
        if self.peek() != "^":
            return base
        self.take()
        exp = self.arg(split_digits=False)  # x^23 is x**23, as parse_latex reads it
        return self._pow(base, exp)

    def postfix(self) -> Any:
        v = self.atom()
        while self.peek() == "!":
            self.take()
            if v.is_number and not (v.is_Integer and 0 <= v <= MAX_FACTORIAL):
                raise ValueError("factorial out of range")
            v = self.sp.factorial(v)
        return v

    def arg(self, split_digits: bool = True) -> Any:
        """A macro argument: ``{...}`` or one token (``\\frac12``: one digit each)."""
        tok = self.peek()
        if split_digits and tok is not None and tok.isdigit() and len(tok) > 1:
            self.toks[self.i: self.i + 1] = [tok[0], tok[1:]]
        return self.postfix()

    def atom(self) -> Any:
        sp, tok = self.sp, self.take()
        if tok[0].isdigit():
            return sp.Rational(tok)  # exact: 0.5 == 1/2
        if len(tok) == 1 and tok.isalpha():
            return sp.Symbol(tok)
        if tok in _CLOSE:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ValueError("nested too deeply")
            v = self.expr()
            self.take(_CLOSE[tok])
            self.depth -= 1
            return v
        if tok in _FRACS:
            num = self.arg()
            return num / self.arg()
        if tok == "\\sqrt":
            index = None
            if self.peek() == "[":
                self.take()
                index = self.expr()
                self.take("]")
            x = self.arg()
            return sp.sqrt(x) if index is None else self._pow(x, 1 / index)
        if tok == "\\pi":
            return sp.pi
        if tok[1:] in _GREEK:
            return sp.Symbol(tok[1:])
        raise ValueError(f"unsupported token {tok!r}")

    def _starts_atom(self, tok: str) -> bool:
        return (tok[0].isalnum() or tok in _CLOSE or tok in _FRACS or tok in ("\\sqrt", "\\pi")
                or tok[1:] in _GREEK)

    def _pow(self, base: Any, exp: Any) -> Any:
        """``base ** exp``, refusing results too big to build or to simplify."""
        if exp.is_Number and abs(exp) > MAX_POW_BITS:
            raise ValueError("exponent too large")
        if base.is_Rational and exp.is_Integer and base not in (0, 1, -1):
            if max(abs(base.p), base.q).bit_length() * abs(int(exp)) > MAX_POW_BITS:
                raise ValueError("power too large")
        elif base.free_symbols and exp.is_Number and abs(exp) > MAX_DEGREE:
            raise ValueError("degree too high")
        return base**exp


def latex_to_sympy(latex: str) -> Any | None:
    """A sympy expression for a LaTeX answer (``\\frac{\\sqrt{3}}{2}``, ``2x+1``, ``3\\pi``), or
    None when it is empty, too large, or not a form we parse (see the module docstring)."""
    import sympy

    s = latex.strip() if isinstance(latex, str) else ""
    if not s or len(s) > MAX_CHARS:
        return None
    for a in _SPACING:
        s = s.replace(a, " ")
    tokens = _TOKEN_RE.findall(s)
    if "".join(tokens) != re.sub(r"\s+", "", s):  # something outside the grammar
        return None
    # whole commands only: "x\\cdoty" (Minerva's normalisation drops spaces) is unknown, as in parse_latex
    tokens = [_OPERATORS.get(t, t) for t in tokens if t not in _SKIPPED]
    parser = _Parser(tokens, sympy)
    try:
        expr = parser.expr()
    except Exception:  # noqa: BLE001 - malformed, refused as too big, or sympy objected: not parseable
        return None
    return expr if parser.peek() is None else None


def _is_zero(diff: Any) -> bool:
    import sympy

    if diff == 0:
        return True
    if diff.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        return False
    if not diff.free_symbols and abs(complex(diff.evalf(30))) > 1e-20:
        return False  # a number that is clearly not 0: no need to simplify
    return bool(sympy.simplify(diff) == 0)


def symbolic_equal(a: str, b: str, timeout_s: float = 5.0) -> bool:
    """Minerva's ``is_equiv`` on two (already normalised) LaTeX answers: True when sympy shows
    ``a - b`` simplifies to 0. Unparseable input, errors and running past ``timeout_s`` (lm-eval
    allows 5 s too) all mean False; never raises."""

    if isinstance(a, str) and a and a == b:  # as lm-eval's is_equiv: same answer, even if unparseable
        return True

    def compare() -> bool:
        x, y = latex_to_sympy(a), latex_to_sympy(b)
        return x is not None and y is not None and _is_zero(x - y)

    try:
        return run_with_timeout(compare, timeout_s) is True
    except Exception:  # noqa: BLE001 - any failure means "not shown equal"
        return False


class _Timeout(BaseException):
    """Raised by the SIGALRM handler; a BaseException so sympy's ``except Exception`` can't swallow it."""


def run_with_timeout(fn: Callable[[], T], timeout_s: float) -> T | None:
    """``fn()``, or None if it raises or has not finished after ``timeout_s`` seconds.

    In the main thread (no other interval timer running) a SIGALRM timer interrupts ``fn`` — sympy
    is pure Python, so it stops promptly. Signals only reach the main thread, so elsewhere ``fn``
    runs in a daemon thread that is abandoned on timeout (the size limits of
    :func:`latex_to_sympy` bound how long it can go on)."""
    in_main = threading.current_thread() is threading.main_thread()
    if in_main and hasattr(signal, "setitimer") and signal.getitimer(signal.ITIMER_REAL)[0] == 0:
        done = False

        def on_alarm(signum: int, frame: Any) -> None:
            if not done:
                raise _Timeout

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            result = fn()
            done = True
            return result
        except (_Timeout, Exception):
            return None
        finally:
            done = True
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    box: list[T] = []

    def work() -> None:
        try:
            box.append(fn())
        except Exception:  # noqa: BLE001 - reported as None
            pass

    worker = threading.Thread(target=work, daemon=True, name="olmoflow-sympy")
    worker.start()
    worker.join(timeout_s)
    return box[0] if box else None
