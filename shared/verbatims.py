"""Verbatims: theme tagging from a keyword taxonomy and a lexicon sentiment signal, French and English. Pure.

Words are lower-cased, split on French elisions (``n'est`` -> ``n'`` ``est``), stemmed with the Snowball
stemmer of the keyword's language and folded to ASCII, so ``livrée``, ``livraison``... and ``delivery``,
``delivered``... meet their keywords. Keywords may be phrases (``took too long``), matched as a run of
stems. Sentiment sums lexicon hits; a negator (``not``, ``never``, ``ne``, ``pas``, ``jamais``...) flips
the next sentiment words within a short window, so "not good" and "pas terrible" read right.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import snowballstemmer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.yamlio import load_yaml

Language = Literal["en", "fr"]
LANGUAGES: tuple[Language, ...] = ("en", "fr")
#: The taxonomy shipped with the platform (``CSAT_THEMES_FILE`` replaces it, in actions and the scorer).
DEFAULT_THEMES = Path(__file__).parent / "themes.yaml"
_STEMMER_NAMES = {"en": "english", "fr": "french"}
NEGATION_WINDOW = 3

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'"})  # typographic apostrophes -> ASCII
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*", re.UNICODE)
_ELISIONS = {"n", "l", "d", "j", "qu", "s", "c", "m", "t", "jusqu", "lorsqu", "puisqu"}


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


#: Very frequent words, to tell French from English when the customer's locale is unknown.
_STOPWORDS: dict[Language, frozenset[str]] = {
    "en": _word_set(
        "the a an and is was are were to of it i my me we our you your this that not no very but "
        "with for on in at have has had be been they their so too"
    ),
    "fr": _word_set(
        "le la les un une des et est était sont je j mon ma mes nous notre vous votre ce cette c pas "
        "ne n très mais avec pour sur dans au aux du de d il elle ont avait été trop à que qui rien "
        "tout toujours jamais"
    ),
}


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=4)
def _stemmer(language: Language) -> Any:
    return snowballstemmer.stemmer(_STEMMER_NAMES[language])


@lru_cache(maxsize=50_000)
def stem(word: str, language: Language) -> str:
    """The stem of one lower-case word, folded to ASCII (``délais`` and ``delais`` meet)."""
    return _fold(str(_stemmer(language).stemWord(word)))


def tokenize(text: str) -> list[str]:
    """Lower-case words; French elisions become their own token (``n'``), English ``n't`` stays whole."""
    out: list[str] = []
    for match in _WORD.finditer(text.lower().translate(_APOSTROPHES)):
        token = match.group(0)
        while "'" in token:
            head, _, rest = token.partition("'")
            if head in _ELISIONS:
                out.append(head + "'")
                token = rest
                continue
            break
        if token:
            out.append(token)
    return out


def stems(tokens: Sequence[str], language: Language) -> list[str]:
    return [stem(t.rstrip("'"), language) for t in tokens]


# ---- configuration --------------------------------------------------------------------------------
class ThemeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")
    label: str = ""
    owner: str | None = Field(default=None, description="Team address that receives critical comments")
    keywords: dict[Language, list[str]]

    @field_validator("keywords")
    @classmethod
    def _some(cls, value: dict[Language, list[str]]) -> dict[Language, list[str]]:
        if not any(value.values()):
            raise ValueError("at least one keyword in en or fr")
        for lang, words in value.items():
            for w in words:
                if not tokenize(w):
                    raise ValueError(f"{lang}: keyword {w!r} has no word in it")
        return value


class Lexicon(BaseModel):
    model_config = ConfigDict(extra="forbid")

    positive: list[str] = Field(default_factory=list)
    negative: list[str] = Field(default_factory=list)
    negators: list[str] = Field(default_factory=list)


class TaxonomySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    default_owner: str | None = None
    themes: list[ThemeSpec] = Field(min_length=1)
    sentiment: dict[Language, Lexicon]


class TaxonomyError(ValueError):
    """A taxonomy file that cannot be used; the message names the theme and field."""


@dataclass(frozen=True, slots=True)
class _CompiledTheme:
    id: str
    owner: str | None
    words: dict[Language, frozenset[str]]  # one-word keywords: a set lookup
    phrases: dict[Language, tuple[tuple[str, ...], ...]]  # multi-word keywords: a run of stems


@dataclass(frozen=True, slots=True)
class _CompiledLexicon:
    positive: frozenset[str]
    negative: frozenset[str]
    negators: frozenset[str]  # raw lower-case tokens, not stems ("n'", "pas", "not", "never")
    phrases: tuple[tuple[tuple[str, ...], int], ...]  # multi-word entries ("pas terrible"), longest first


@dataclass(frozen=True, slots=True)
class Analysis:
    themes: tuple[str, ...]
    sentiment: Literal["negative", "neutral", "positive"]
    score: float
    language: Language


class Taxonomy:
    """A compiled taxonomy: keyword stems per theme and language, sentiment lexicons."""

    def __init__(self, spec: TaxonomySpec) -> None:
        self.default_owner = spec.default_owner
        self._themes = []
        for t in spec.themes:
            compiled = {
                lang: [tuple(stems(tokenize(k), lang)) for k in words] for lang, words in t.keywords.items()
            }
            self._themes.append(
                _CompiledTheme(
                    id=t.id,
                    owner=t.owner,
                    words={lang: frozenset(p[0] for p in ps if len(p) == 1) for lang, ps in compiled.items()},
                    phrases={lang: tuple(p for p in ps if len(p) > 1) for lang, ps in compiled.items()},
                )
            )
        self._lexicons = {lang: _compile_lexicon(lex, lang) for lang, lex in spec.sentiment.items()}

    def owner(self, theme_id: str) -> str | None:
        for t in self._themes:
            if t.id == theme_id:
                return t.owner or self.default_owner
        return self.default_owner

    @property
    def theme_ids(self) -> list[str]:
        return [t.id for t in self._themes]

    def themes_of(self, tokens: Sequence[str]) -> tuple[str, ...]:
        """Themes whose keywords (in their own language) occur in the text, in taxonomy order."""
        by_lang = {lang: stems(tokens, lang) for lang in LANGUAGES}
        sets = {lang: frozenset(st) for lang, st in by_lang.items()}
        found: list[str] = []
        for theme in self._themes:
            for lang in LANGUAGES:
                words, phrases = theme.words.get(lang, frozenset()), theme.phrases.get(lang, ())
                if not words.isdisjoint(sets[lang]) or any(
                    p[0] in sets[lang] and _contains(by_lang[lang], p) for p in phrases
                ):
                    found.append(theme.id)
                    break
        return tuple(found)

    def sentiment_of(self, tokens: Sequence[str], language: Language) -> float:
        """Lexicon hits (+1 / -1, negated ones flipped) divided by the square root of the hit count."""
        lex = self._lexicons.get(language)
        if lex is None:
            return 0.0
        total = 0.0
        hits = 0
        negate_until = -1
        stemmed = stems(tokens, language)
        i = 0
        while i < len(tokens):
            phrase = next(((p, pol) for p, pol in lex.phrases if _starts(stemmed, i, p)), None)
            if phrase is not None:
                # A phrase carries its own polarity, negation included ("pas terrible", "not bad").
                total += phrase[1]
                hits += 1
                i += len(phrase[0])
                negate_until = -1
                continue
            tok, st = tokens[i], stemmed[i]
            if tok.rstrip("'") in lex.negators or tok.endswith("n't"):
                negate_until = i + NEGATION_WINDOW
                i += 1
                continue
            polarity = 1 if st in lex.positive else -1 if st in lex.negative else 0
            if polarity != 0:
                total += -polarity if i <= negate_until else polarity
                hits += 1
            i += 1
        return 0.0 if hits == 0 else total / hits**0.5

    def analyze(self, text: str | None, *, locale: str | None = None) -> Analysis:
        tokens = tokenize(text or "")
        language = guess_language(tokens, locale)
        if not tokens:
            return Analysis(themes=(), sentiment="neutral", score=0.0, language=language)
        score = round(self.sentiment_of(tokens, language), 3)
        label: Literal["negative", "neutral", "positive"] = (
            "negative" if score < 0 else "positive" if score > 0 else "neutral"
        )
        return Analysis(themes=self.themes_of(tokens), sentiment=label, score=score, language=language)


def _compile_lexicon(lex: Lexicon, lang: Language) -> _CompiledLexicon:
    def singles(items: Iterable[str]) -> frozenset[str]:
        return frozenset(stems(t, lang)[0] for t in map(tokenize, items) if len(t) == 1)

    phrases = [
        (tuple(stems(t, lang)), polarity)
        for items, polarity in ((lex.positive, 1), (lex.negative, -1))
        for t in map(tokenize, items)
        if len(t) > 1
    ]
    phrases.sort(key=lambda p: -len(p[0]))
    return _CompiledLexicon(
        positive=singles(lex.positive),
        negative=singles(lex.negative),
        negators=frozenset(t for w in lex.negators for t in tokenize(w)),
        phrases=tuple(phrases),
    )


def _starts(haystack: Sequence[str], at: int, phrase: Sequence[str]) -> bool:
    return tuple(haystack[at : at + len(phrase)]) == tuple(phrase)


def _contains(haystack: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    if n == 0:
        return False
    if n == 1:
        return phrase[0] in haystack
    return any(tuple(haystack[i : i + n]) == tuple(phrase) for i in range(len(haystack) - n + 1))


def guess_language(tokens: Sequence[str], locale: str | None = None) -> Language:
    """French or English by frequent words; the customer's locale breaks ties."""
    hint: Language = "fr" if (locale or "").lower().startswith("fr") else "en"
    counts = {lang: sum(1 for t in tokens if t.rstrip("'") in words) for lang, words in _STOPWORDS.items()}
    if counts["fr"] == counts["en"]:
        return hint
    return "fr" if counts["fr"] > counts["en"] else "en"


def parse_taxonomy(data: Any, *, origin: str = "<taxonomy>") -> Taxonomy:
    try:
        spec = TaxonomySpec.model_validate(data)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            loc = list(err["loc"])
            where = ""
            if len(loc) >= 2 and loc[0] == "themes" and isinstance(loc[1], int) and isinstance(data, dict):
                items = data.get("themes") or []
                item = items[loc[1]] if loc[1] < len(items) else None
                tid = item.get("id") if isinstance(item, Mapping) else None
                where = f"theme {tid or '#' + str(loc[1])}: "
                loc = loc[2:]
            msg = str(err["msg"]).removeprefix("Value error, ")
            parts.append(f"{where}{'.'.join(str(p) for p in loc) or 'file'}: {msg}")
        raise TaxonomyError(f"{origin}: " + "; ".join(parts)) from exc
    seen: set[str] = set()
    for t in spec.themes:
        if t.id in seen:
            raise TaxonomyError(f"{origin}: theme {t.id}: id is used twice")
        seen.add(t.id)
    return Taxonomy(spec)


def load_taxonomy_file(path: Path) -> Taxonomy:
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TaxonomyError(f"{path}: not valid YAML: {exc}") from exc
    return parse_taxonomy(data, origin=str(path))
