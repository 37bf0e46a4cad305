"""Stage 0 of the input cascade: undo the cheap tricks that hide an instruction from a lexical detector.

:func:`normalize` turns raw text into a :class:`Normalized` record: one folded main *view* (NFKC, invisible
characters removed, confusables folded to Latin, case-folded, letter-by-letter spacing joined) plus extra
views for anything that was hidden or encoded (Unicode-tag payloads, base64/hex/URL/ROT13 decodings, text an
HTML or Markdown renderer would not show). Every trick that was seen is recorded as a *flag*, because the
presence of a trick is itself evidence. Work is bounded: decoding recurses at most ``max_depth`` levels and
never produces more than ``max_decoded_chars`` characters, whatever the input.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass

__all__ = ["Normalized", "View", "decode_bytes", "fold_confusables", "normalize"]

# Zero-width and formatting characters that render as nothing.
_INVISIBLE = "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"
_BIDI = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}]")
_BIDI_RE = re.compile(f"[{_BIDI}]")
_VARIATION_RE = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")
_TAG_RE = re.compile("[\U000e0000-\U000e007f]+")

# Letters from other scripts that look like Latin ones (a small, hand-made table; NFKC handles full-width
# and mathematical alphanumerics).
_CONFUSABLES = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ɡ": "g", "һ": "h",
    "ԛ": "q", "ԝ": "w", "ո": "n", "ս": "u", "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H",
    "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X", "Ү": "Y", "І": "I", "Ј": "J", "Ѕ": "S",
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "τ": "t", "ι": "i", "κ": "k", "υ": "u", "χ": "x", "ε": "e",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ı": "i", "ȷ": "j", "ℓ": "l", "∕": "/", "‐": "-", "‑": "-",
    "–": "-", "—": "-", "“": '"', "”": '"', "‘": "'", "’": "'",
}  # fmt: skip
_CONFUSABLE_TABLE = str.maketrans(_CONFUSABLES)
_CONFUSABLE_RE = re.compile("[" + "".join(_CONFUSABLES) + "]")
_MIXED_SCRIPT_RE = re.compile(f"[a-zA-Z]{_CONFUSABLE_RE.pattern}|{_CONFUSABLE_RE.pattern}[a-zA-Z]")
_LEET_TABLE = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "|": "l"})
_LEET_WORD_RE = re.compile(r"[a-z][0-9@$|]+[a-z]|\b[0-9@$|][a-z]{2,}")

# "i g n o r e", "i.g.n.o.r.e", "i-g-n-o-r-e": four or more single characters with one separator each.
_SPACED_RE = re.compile(r"(?<![^\W_])[^\W_](?:(?:[ .\-_*|/]|[ \t]{2,6}|[ ]?[/|][ ]?)[^\W_]){3,}(?![^\W_])")
_SPACED_SEP_RE = re.compile(r"[ .\-_*|/]")
_SPACED_GAP_RE = re.compile(r"[ \t]{2,}|[ ]?[/|][ ]?(?=.)")
_BASE64_RE = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX_RE = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[ :]?){8,}")
_ESCAPED_HEX_RE = re.compile(r"(?:\\x[0-9A-Fa-f]{2}){4,}")
_URL_RE = re.compile(r"(?:%[0-9A-Fa-f]{2}[^%\s]{0,3}){4,}")
_WS_RE = re.compile(r"\s+")

# What an HTML or Markdown renderer hides from the person but still hands to the model.
_HTML_COMMENT_RE = re.compile(r"<!--(.*?)-->", re.S)
_HIDDEN_ELEMENT_RE = re.compile(
    r"<(\w+)[^>]*?style\s*=\s*[\"'][^\"']*?(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0|"
    r"opacity\s*:\s*0(?:\.0*)?[;\"']|color\s*:\s*(?:white|#fff\b|#ffffff))[^>]*>(.*?)</\1>",
    re.S | re.I,
)
_HIDDEN_ATTR_RE = re.compile(r"<\w+[^>]*?\bhidden\b[^>]*>(.*?)</\w+>", re.S | re.I)
_ALT_TITLE_RE = re.compile(r"\b(?:alt|title|aria-label)\s*=\s*[\"']([^\"']{12,})[\"']", re.I)
_MD_COMMENT_RE = re.compile(r"^\s*\[(?://|comment)\]:\s*#\s*[(\"'](.*?)[)\"']\s*$", re.M)
_MD_LINK_TITLE_RE = re.compile(r"\]\([^)\s]+\s+\"([^\"]{12,})\"\)")
_TAG_STRIP_RE = re.compile(r"<[^>]{0,400}>")

_EN_WORDS_TEXT = (
    "the and you to of is that for this with are your not have be it in on all a an me my we our now new "
    "will from what how can do does please give tell say show print make write answer reply only just "
    "must should system user assistant model rules instructions prompt previous ignore reveal secret "
    "password policy one two first next then when if or as at by so no any every update priority role "
    "content file files email data key admin mode hello thanks"
)
_EN_WORDS = frozenset(_EN_WORDS_TEXT.split())


@dataclass(frozen=True, slots=True)
class View:
    """One reading of the input: ``kind`` is ``main``, ``spaced``, ``leet``, ``tags``, ``base64``, ``hex``,
    ``url``, ``rot13`` or ``hidden``; ``text`` is already folded (lower case, confusables mapped)."""

    kind: str
    text: str


@dataclass(frozen=True, slots=True)
class Normalized:
    """The normalised input: the main folded view, extra views, and the flags of every trick seen."""

    text: str
    views: tuple[View, ...]
    flags: tuple[str, ...]
    original_chars: int


def decode_bytes(data: bytes) -> tuple[str, bool]:
    """Decode UTF-8, replacing invalid sequences; return the text and whether any byte was invalid."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), True


def fold_confusables(text: str) -> str:
    """Map look-alike letters of other scripts to the Latin letter they imitate."""
    return text.translate(_CONFUSABLE_TABLE)


def _printable_ratio(text: str) -> float:
    if not text:
        return 0.0
    good = sum(1 for ch in text if ch.isprintable() or ch in "\n\t")
    return good / len(text)


def _as_text(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(1 for ch in text if ch.isalpha())
    if len(text) < 6 or _printable_ratio(text) < 0.95 or letters < 0.3 * len(text.replace(" ", "")):
        return None
    return text


def _try_base64(token: str) -> str | None:
    if len(token) % 4 == 1:
        return None
    if not (any(c.isdigit() or c.isupper() for c in token) and any(c.islower() for c in token)):
        return None
    padded = token + "=" * (-len(token) % 4)
    try:
        if "-" in token or "_" in token:
            raw = base64.urlsafe_b64decode(padded)
        else:
            raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _as_text(raw)


def _try_hex(token: str) -> str | None:
    digits = re.sub(r"[^0-9A-Fa-f]", "", token)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        return _as_text(bytes.fromhex(digits))
    except ValueError:
        return None


def _rot13_gain(text: str) -> bool:
    words = re.findall(r"[a-z]+", text)
    if len(words) < 3:
        return False
    plain = sum(1 for w in words if w in _EN_WORDS)
    if plain * 10 >= len(words):  # ordinary English: at least one word in ten is a common one
        return False
    rotated = sum(1 for w in words if codecs.encode(w, "rot13") in _EN_WORDS)
    return rotated >= 2 and rotated > 2 * plain


def _fold(text: str, *, collapse: bool = True) -> str:
    if not text.isascii():  # NFKC and the look-alike table change nothing in ASCII
        text = fold_confusables(unicodedata.normalize("NFKC", text))
    text = text.casefold()
    return _WS_RE.sub(" ", text).strip() if collapse else text


def _despace(match: re.Match[str]) -> str:
    # Inside a letter-by-letter run, a wide gap (or a slash) separates words; single separators go.
    run = _SPACED_GAP_RE.sub("\x00", match.group(0))
    if any(sep in run for sep in ".-_*"):
        run = run.replace(" ", "\x00")
    return _SPACED_SEP_RE.sub("", run).replace("\x00", " ")


def _hidden_text(raw: str) -> list[str]:
    found: list[str] = []
    for m in _HTML_COMMENT_RE.finditer(raw):
        found.append(m.group(1))
    for m in _HIDDEN_ELEMENT_RE.finditer(raw):
        found.append(m.group(2))
    for m in _HIDDEN_ATTR_RE.finditer(raw):
        found.append(m.group(1))
    for m in _ALT_TITLE_RE.finditer(raw):
        found.append(m.group(1))
    for m in _MD_COMMENT_RE.finditer(raw):
        found.append(m.group(1))
    for m in _MD_LINK_TITLE_RE.finditer(raw):
        found.append(m.group(1))
    return [_TAG_STRIP_RE.sub(" ", part) for part in found if part.strip()]


class _Budget:
    def __init__(self, max_chars: int) -> None:
        self.left = max_chars
        self.capped = False

    def take(self, text: str) -> str | None:
        if self.left <= 0:
            self.capped = True
            return None
        if len(text) > self.left:
            self.capped = True
            text = text[: self.left]
        self.left -= len(text)
        return text


def _decode_layers(text: str, depth: int, max_depth: int, budget: _Budget, views: list[View], flags: set[str]) -> None:
    """Find encoded segments in ``text``, decode them and recurse into what they decode to."""
    if depth >= max_depth:
        if _BASE64_RE.search(text) or _HEX_RE.search(text):
            flags.add("decode_depth_cap")
        return
    found: list[tuple[str, str]] = []
    for m in _BASE64_RE.finditer(text):
        decoded = _try_base64(m.group(0))
        if decoded is not None:
            found.append(("base64", decoded))
    for m in _HEX_RE.finditer(text):
        decoded = _try_hex(m.group(0))
        if decoded is not None:
            found.append(("hex", decoded))
    for m in _ESCAPED_HEX_RE.finditer(text):
        decoded = _try_hex(m.group(0).replace("\\x", ""))
        if decoded is not None:
            found.append(("hex", decoded))
    if _URL_RE.search(text):
        decoded = urllib.parse.unquote(text)
        if decoded != text:
            found.append(("url", decoded))
    for kind, decoded in found:
        kept = budget.take(decoded)
        if kept is None:
            return
        flags.add(kind)
        views.append(View(kind, _fold(kept)))
        _decode_layers(kept, depth + 1, max_depth, budget, views, flags)


def normalize(
    text: str,
    *,
    max_chars: int = 200_000,
    max_depth: int = 3,
    max_decoded_chars: int = 20_000,
) -> Normalized:
    """Normalise ``text`` for detection; see the module docstring.

    Args:
        text: the raw input (already decoded; use :func:`decode_bytes` for bytes).
        max_chars: characters examined at most; the rest is dropped and flagged ``truncated``.
        max_depth: how many encoding layers are peeled at most (``decode_depth_cap`` when more remain).
        max_decoded_chars: total characters all decodings may produce.
    """
    original_chars = len(text)
    flags: set[str] = set()
    if len(text) > max_chars:
        text = text[:max_chars]
        flags.add("truncated")
    if "\ufffd" in text:
        flags.add("replacement_char")
    views: list[View] = []

    if not text.isascii():  # every invisible, bidi, tag and look-alike character is outside ASCII
        tags = _TAG_RE.findall(text)
        if tags:
            flags.add("unicode_tags")
            smuggled = "".join(chr(ord(ch) - 0xE0000) for run in tags for ch in run if 0x20 <= ord(ch) - 0xE0000 < 0x7F)
            if smuggled.strip():
                views.append(View("tags", _fold(smuggled)))
            text = _TAG_RE.sub("", text)
        if _INVISIBLE_RE.search(text):
            flags.add("zero_width")
            text = _INVISIBLE_RE.sub("", text)
        if _BIDI_RE.search(text):
            flags.add("bidi")
            text = _BIDI_RE.sub("", text)
        if _VARIATION_RE.search(text):
            flags.add("variation_selectors")
            text = _VARIATION_RE.sub("", text)
        if (
            not text.isascii()
            and _CONFUSABLE_RE.search(unicodedata.normalize("NFKC", text))
            and _MIXED_SCRIPT_RE.search(text)
        ):
            flags.add("confusables")

    if "<" in text or "[" in text:
        hidden = _hidden_text(text)
        if hidden:
            flags.add("hidden_markup")
            views.append(View("hidden", _fold(" ".join(hidden))))

    main = _fold(text)
    if _SPACED_RE.search(main):
        raw_fold = _fold(text, collapse=False)
        tokens = raw_fold.split()
        if tokens and sum(1 for t in tokens if len(t) == 1) > 0.6 * len(tokens) and re.search(r"\S {2,}\S", raw_fold):
            # The whole text is written letter by letter: wide gaps are word breaks, single spaces go.
            joined = " ".join(w.replace(" ", "") for w in re.split(r"\s{2,}", raw_fold))
        else:
            joined = _SPACED_RE.sub(_despace, raw_fold)
        flags.add("spaced")
        views.append(View("spaced", _WS_RE.sub(" ", joined).strip()))
    if _LEET_WORD_RE.search(main):
        leet = main.translate(_LEET_TABLE)
        if leet != main:
            views.append(View("leet", leet))
    if _rot13_gain(main):
        flags.add("rot13")
        views.append(View("rot13", codecs.encode(main, "rot13")))
    budget = _Budget(max_decoded_chars)
    _decode_layers(text, 0, max_depth, budget, views, flags)
    if budget.capped:
        flags.add("decode_budget_cap")
    return Normalized(text=main, views=tuple(views), flags=tuple(sorted(flags)), original_chars=original_chars)
