"""Verbatim themes and sentiment: ``shared.verbatims`` (the scorer's verbatims API tags comments with the
same taxonomy), re-exported here so the actions modules keep their import."""

from __future__ import annotations

from shared.verbatims import (
    DEFAULT_THEMES,
    LANGUAGES,
    Analysis,
    Language,
    Taxonomy,
    TaxonomyError,
    guess_language,
    load_taxonomy_file,
    parse_taxonomy,
    stem,
    stems,
    tokenize,
)

__all__ = [
    "DEFAULT_THEMES",
    "LANGUAGES",
    "Analysis",
    "Language",
    "Taxonomy",
    "TaxonomyError",
    "guess_language",
    "load_taxonomy_file",
    "parse_taxonomy",
    "stem",
    "stems",
    "tokenize",
]
