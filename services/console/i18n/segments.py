"""Texts of the Segments view: ranking, significance against the whole, drill-down, heat map, CSV."""

from __future__ import annotations

EN: dict[str, str] = {
    "segments.title": "Segments",
    "segments.crumbs": "Where you are",
    "segments.up": "Back to every {dimension}",
    "segments.filters": "Ranking",
    "segments.by": "Rank by",
    "segments.sort": "Sort on",
    "segments.sort.score": "score",
    "segments.sort.responses": "answers",
    "segments.sort.ci_low": "interval, low end",
    "segments.sort.ci_high": "interval, high end",
    "segments.sort.delta": "change",
    "segments.order": "Order",
    "segments.order.desc": "highest first",
    "segments.order.asc": "lowest first",
    "segments.ranking": "{metric} by {dimension}, last {window}",
    "segments.no_whole": "Your access covers some segments only: they are not compared with the whole.",
    "segments.whole": "The whole: {value} over {n} answers.",
    "segments.whole_drilled": "{segment} as a whole: {value} over {n} answers.",
    "segments.ces_compared": "(CES: rows are compared on their share of easy answers.)",
    "segments.drill_unavailable": "No ranking by {dimension} here: it is not counted together with this "
    "segment's dimension (an administrator can add the combination in CSAT_COMBINATIONS).",
    "segments.showing": "{shown} of {total} shown.",
    "segments.marked": "{count} significantly below the whole.",
    "segments.csv": "Download these rows (CSV)",
    "segments.col.rank": "Rank",
    "segments.col.change": "Change",
    "segments.col.vs_whole": "Against the whole",
    "segments.col.open": "Details",
    "segments.folded": "values beyond the cap",
    "segments.few": "(few answers)",
    "segments.dropped": "significant drop",
    "segments.below": "significantly below",
    "segments.not_below": "not significantly below",
    "segments.open_scores": "Scores",
    "segments.none": "No segment with answers in this window that you may see.",
    "segments.help_title": "How \u201csignificantly below\u201d is decided",
    "segments.help_test": "A segment is marked when it has at least the minimum number of answers and its "
    "whole 95 % interval lies below the whole's score (for CES, its share of easy answers): a one-sided "
    "test at 2.5 % that the segment is at least as good as the whole, taken as known since it rests on "
    "many more answers.",
    "segments.help_chance": "With many segments, some are marked by chance: about one in forty of those "
    "truly at the whole's level. Look at the size of the gap and at n before acting.",
    "segments.help_drill": "Click a value to drill down (a store to its channels); the whole is then that "
    "value. The CSV holds exactly the rows shown, numbers unformatted.",
    "segments.heatmap": "{metric}: {rows} by {columns}",
    "segments.heatmap_unavailable": "No heat map of {rows} by {columns}: they are not counted together "
    "(CSAT_COMBINATIONS).",
    "segments.heatmap_hint": "The {shown} busiest of {total}; each cell gives its score and its number of "
    "answers.",
    "segments.legend": "Colour key",
    "segments.level5": "85 % and over",
    "segments.level4": "80 to 85 %",
    "segments.level3": "70 to 80 %",
    "segments.level2": "50 to 70 %",
    "segments.level1": "under 50 %",
    "segments.level5_nps": "50 and over",
    "segments.level4_nps": "30 to 50",
    "segments.level3_nps": "0 to 30",
    "segments.level2_nps": "-30 to 0",
    "segments.level1_nps": "under -30",
    "segments.level_few": "too few answers to read",
    "segments.no_answers": "no answers",
    "segments.cell_n": "n = {n}",
}

FR: dict[str, str] = {
    "segments.title": "Segments",
    "segments.crumbs": "Où vous êtes",
    "segments.up": "Retour à toutes les valeurs de {dimension}",
    "segments.filters": "Classement",
    "segments.by": "Classer par",
    "segments.sort": "Trier sur",
    "segments.sort.score": "score",
    "segments.sort.responses": "réponses",
    "segments.sort.ci_low": "intervalle, borne basse",
    "segments.sort.ci_high": "intervalle, borne haute",
    "segments.sort.delta": "évolution",
    "segments.order": "Ordre",
    "segments.order.desc": "du plus haut au plus bas",
    "segments.order.asc": "du plus bas au plus haut",
    "segments.ranking": "{metric} par {dimension}, derniers {window}",
    "segments.no_whole": "Votre accès ne couvre que certains segments : ils ne sont pas comparés à "
    "l'ensemble.",
    "segments.whole": "L'ensemble : {value} sur {n} réponses.",
    "segments.whole_drilled": "{segment} dans son ensemble : {value} sur {n} réponses.",
    "segments.ces_compared": "(CES : les lignes sont comparées sur leur part de réponses faciles.)",
    "segments.drill_unavailable": "Pas de classement par {dimension} ici : cette dimension n'est pas "
    "comptée avec celle du segment (un administrateur peut ajouter la combinaison dans CSAT_COMBINATIONS).",
    "segments.showing": "{shown} sur {total} affichés.",
    "segments.marked": "{count} nettement sous l'ensemble.",
    "segments.csv": "Télécharger ces lignes (CSV)",
    "segments.col.rank": "Rang",
    "segments.col.change": "Évolution",
    "segments.col.vs_whole": "Par rapport à l'ensemble",
    "segments.col.open": "Détails",
    "segments.folded": "valeurs au-delà du plafond",
    "segments.few": "(peu de réponses)",
    "segments.dropped": "baisse significative",
    "segments.below": "nettement en dessous",
    "segments.not_below": "pas nettement en dessous",
    "segments.open_scores": "Scores",
    "segments.none": "Aucun segment visible pour vous avec des réponses sur cette période.",
    "segments.help_title": "Comment « nettement en dessous » est décidé",
    "segments.help_test": "Un segment est signalé quand il a au moins le nombre minimal de réponses et que "
    "tout son intervalle à 95 % est sous le score de l'ensemble (pour le CES, sa part de réponses "
    "faciles) : un test unilatéral à 2,5 % que le segment vaut au moins l'ensemble, considéré comme "
    "connu car il repose sur beaucoup plus de réponses.",
    "segments.help_chance": "Avec beaucoup de segments, certains sont signalés par hasard : environ un sur "
    "quarante de ceux qui sont réellement au niveau de l'ensemble. Regardez l'écart et n avant d'agir.",
    "segments.help_drill": "Cliquez une valeur pour descendre d'un niveau (un magasin vers ses canaux) ; "
    "l'ensemble devient alors cette valeur. Le CSV contient exactement les lignes affichées, nombres "
    "non formatés.",
    "segments.heatmap": "{metric} : {rows} par {columns}",
    "segments.heatmap_unavailable": "Pas de carte de chaleur {rows} par {columns} : ces dimensions ne sont "
    "pas comptées ensemble (CSAT_COMBINATIONS).",
    "segments.heatmap_hint": "Les {shown} plus actifs sur {total} ; chaque case donne son score et son "
    "nombre de réponses.",
    "segments.legend": "Légende des couleurs",
    "segments.level5": "85 % et plus",
    "segments.level4": "80 à 85 %",
    "segments.level3": "70 à 80 %",
    "segments.level2": "50 à 70 %",
    "segments.level1": "moins de 50 %",
    "segments.level5_nps": "50 et plus",
    "segments.level4_nps": "30 à 50",
    "segments.level3_nps": "0 à 30",
    "segments.level2_nps": "-30 à 0",
    "segments.level1_nps": "moins de -30",
    "segments.level_few": "trop peu de réponses pour lire",
    "segments.no_answers": "aucune réponse",
    "segments.cell_n": "n = {n}",
}
