"""Verbatims: themes from the keyword taxonomy (French and English, stemmed) and the sentiment signal."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.actions.verbatims import (
    TaxonomyError,
    guess_language,
    load_taxonomy_file,
    parse_taxonomy,
    stem,
    tokenize,
)
from shared.verbatims import DEFAULT_THEMES

TAXONOMY = load_taxonomy_file(DEFAULT_THEMES)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Ce n'est pas bon", ["ce", "n'", "est", "pas", "bon"]),
        ("L\u2019accueil", ["l'", "accueil"]),  # typographic apostrophe
        ("It wasn't good", ["it", "wasn't", "good"]),
        ("Waited 40 minutes!!", ["waited", "minutes"]),
        ("", []),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_stems_meet_across_inflections_and_accents() -> None:
    assert stem("livrée", "fr") == stem("livrer", "fr")
    assert stem("délais", "fr") == stem("delais", "fr")
    assert stem("delays", "en") == stem("delay", "en")
    assert stem("charged", "en") == stem("charge", "en")


@pytest.mark.parametrize(
    ("comment", "themes"),
    [
        ("The delivery was late", ("delivery_time",)),
        ("My parcel never arrived", ("delivery_time",)),
        ("Colis livré avec 5 jours de retard", ("delivery_time",)),
        ("Les délais de livraison sont trop longs", ("delivery_time",)),
        ("Waited 40 minutes on hold", ("waiting_time",)),
        ("Personne ne répond au téléphone", ("waiting_time",)),
        ("The product arrived broken", ("product_quality",)),
        ("Le produit ne fonctionne pas", ("product_quality",)),
        ("The cashier was rude", ("staff_reception",)),
        ("Vendeuse très aimable, accueil chaleureux", ("staff_reception",)),
        ("Way too expensive", ("price",)),
        ("Trop cher", ("price",)),
        ("Rude staff and overpriced", ("staff_reception", "price")),
        ("I can't log in to the app", ("website_app",)),
        ("Nothing to say", ()),
    ],
)
def test_themes(comment: str, themes: tuple[str, ...]) -> None:
    assert TAXONOMY.analyze(comment).themes == themes


@pytest.mark.parametrize(
    ("comment", "sentiment"),
    [
        ("Great service, thank you", "positive"),
        ("Terrible, I am very disappointed", "negative"),
        ("not good", "negative"),
        ("not bad at all", "positive"),
        ("It wasn't helpful", "negative"),
        ("I don't recommend them", "negative"),
        ("never again", "negative"),
        ("Never disappointed", "positive"),
        ("Excellent, rien à redire", "positive"),
        ("Très déçu, livraison en retard", "negative"),
        ("Ce n'est pas bon du tout", "negative"),
        ("Pas mal du tout", "positive"),
        ("Franchement pas terrible", "negative"),
        ("Je ne suis pas satisfait", "negative"),
        ("Jamais déçu par ce magasin", "positive"),
        ("Le vendeur était très aimable", "positive"),
        ("The parcel arrived on Tuesday", "neutral"),
        ("", "neutral"),
    ],
)
def test_sentiment_with_negation(comment: str, sentiment: str) -> None:
    assert TAXONOMY.analyze(comment).sentiment == sentiment


@pytest.mark.parametrize(
    ("text", "locale", "language"),
    [
        ("Le colis est arrivé en retard", None, "fr"),
        ("The parcel was late", None, "en"),
        ("Super", "fr-FR", "fr"),
        ("Super", None, "en"),
    ],
)
def test_language(text: str, locale: str | None, language: str) -> None:
    assert guess_language(tokenize(text), locale) == language


def test_theme_owner_and_default() -> None:
    assert TAXONOMY.owner("delivery_time") == "logistics@example.com"
    assert TAXONOMY.owner("unknown") == TAXONOMY.default_owner


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"themes": [], "sentiment": {}}, "themes"),
        (
            {"themes": [{"id": "x", "keywords": {"en": []}}], "sentiment": {}},
            "theme x: keywords: at least one keyword",
        ),
        ({"themes": [{"id": "x", "keywords": {"de": ["a"]}}], "sentiment": {}}, "theme x: keywords.de"),
        (
            {
                "themes": [{"id": "x", "keywords": {"en": ["a"]}}, {"id": "x", "keywords": {"en": ["b"]}}],
                "sentiment": {},
            },
            "theme x: id is used twice",
        ),
    ],
)
def test_taxonomy_errors_name_the_theme(data: object, fragment: str) -> None:
    with pytest.raises(TaxonomyError, match=fragment):
        parse_taxonomy(data)


def test_custom_taxonomy_file(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "themes:\n  - id: parking\n    owner: facilities@example.com\n"
        "    keywords: {en: [parking, car park], fr: [stationnement, parking]}\n"
        "sentiment: {en: {negative: [full]}, fr: {negative: [complet]}}\n",
        encoding="utf-8",
    )
    t = load_taxonomy_file(path)
    assert t.analyze("The car park was full").themes == ("parking",)
    assert t.analyze("Les stationnements étaient complets").sentiment == "negative"
    assert t.analyze("Complet", locale="fr").sentiment == "negative"
