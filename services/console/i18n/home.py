"""Texts of the home page: who is signed in, with which role and reach, and the views they can open."""

from __future__ import annotations

EN: dict[str, str] = {
    "home.title": "Home",
    "home.welcome": "Welcome, {name}",
    "home.role": "Your role: {role}",
    "home.reach": "What you can see",
    "home.segments_all": "Every segment",
    "home.segments_none": "No segment (alerts of your accounts only)",
    "home.segments_some": "Segments: {segments}",
    "home.accounts": "Accounts you own: {count}",
    "home.signed_in_at": "Signed in on {when}.",
    "home.session_until": "This session ends at the latest on {when}.",
    "home.views": "Views",
    "home.view.scores": "CSAT, NPS and CES for any window and segment, with n, intervals and trends.",
    "home.view.segments": "Rank stores, channels or any dimension and drill down.",
    "home.view.verbatims": "Read the comments behind a score, by theme and sentiment.",
    "home.view.alerts": "Your inbox of alerts with their SLA.",
    "home.view.customers": "A customer's history, messages and health.",
    "home.view.rules": "The follow-up playbook, its history and a dry run.",
    "home.view.people": "People, roles, API tokens and the audit log.",
}

FR: dict[str, str] = {
    "home.title": "Accueil",
    "home.welcome": "Bienvenue, {name}",
    "home.role": "Votre rôle : {role}",
    "home.reach": "Ce que vous pouvez consulter",
    "home.segments_all": "Tous les segments",
    "home.segments_none": "Aucun segment (seulement les alertes de vos comptes)",
    "home.segments_some": "Segments : {segments}",
    "home.accounts": "Comptes dont vous êtes responsable : {count}",
    "home.signed_in_at": "Connecté le {when}.",
    "home.session_until": "Cette session se termine au plus tard le {when}.",
    "home.views": "Vues",
    "home.view.scores": "CSAT, NPS et CES pour toute période et tout segment, avec n, intervalles et "
    "tendances.",
    "home.view.segments": "Classez magasins, canaux ou toute autre dimension, et détaillez.",
    "home.view.verbatims": "Lisez les commentaires derrière un score, par thème et sentiment.",
    "home.view.alerts": "Votre boîte d'alertes et leurs délais (SLA).",
    "home.view.customers": "L'historique d'un client, ses messages et sa santé.",
    "home.view.rules": "Le playbook de relances, son historique et une simulation.",
    "home.view.people": "Personnes, rôles, jetons d'API et journal d'audit.",
}
