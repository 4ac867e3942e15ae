"""Texts of signing in and out: the sign-in page, OpenID Connect, one-time links."""

from __future__ import annotations

EN: dict[str, str] = {
    "signin.title": "Sign in",
    "signin.intro": "Sign in to see satisfaction scores, verbatims and alerts.",
    "signin.email": "Email address",
    "signin.password": "Password",
    "signin.submit": "Sign in",
    "signin.with_oidc": "Sign in with {provider}",
    "signin.or": "or with your email address",
    "signin.failed": "The email address or password is not right, or the account is locked for a while. "
    "Check them and try again.",
    "signin.oidc_failed": "Signing in with {provider} did not complete. Please try again.",
    "signin.oidc_unknown": "No console account matches this identity. Ask an administrator to invite "
    "your email address.",
    "signin.oidc_unavailable": "{provider} is not answering right now. Try again in a moment.",
    "signin.signed_out": "You are signed out.",
    "signin.session_ended": "Your session has ended. Please sign in again.",
    "link.title": "One-time sign-in link",
    "link.intro": "This link signs in {name}. It works once, until {until}.",
    "link.confirm": "Sign in as {name}",
    "link.why": "Nothing happens until you press the button, so a mail scanner opening the link cannot "
    "use it.",
    "link.invalid_title": "This link cannot be used",
    "link.invalid": "It was already used, has expired, or is not complete. Sign in with your email "
    "address and password, or ask for a new link.",
    "link.to_sign_in": "Go to the sign-in page",
}

FR: dict[str, str] = {
    "signin.title": "Connexion",
    "signin.intro": "Connectez-vous pour consulter les scores de satisfaction, les verbatims et les alertes.",
    "signin.email": "Adresse e-mail",
    "signin.password": "Mot de passe",
    "signin.submit": "Se connecter",
    "signin.with_oidc": "Se connecter avec {provider}",
    "signin.or": "ou avec votre adresse e-mail",
    "signin.failed": "L'adresse e-mail ou le mot de passe est incorrect, ou le compte est bloqué pour "
    "un moment. Vérifiez-les et recommencez.",
    "signin.oidc_failed": "La connexion avec {provider} n'a pas abouti. Recommencez, s'il vous plaît.",
    "signin.oidc_unknown": "Aucun compte de la console ne correspond à cette identité. Demandez à un "
    "administrateur d'inviter votre adresse e-mail.",
    "signin.oidc_unavailable": "{provider} ne répond pas pour le moment. Réessayez dans un instant.",
    "signin.signed_out": "Vous êtes déconnecté.",
    "signin.session_ended": "Votre session a pris fin. Connectez-vous de nouveau.",
    "link.title": "Lien de connexion à usage unique",
    "link.intro": "Ce lien connecte {name}. Il fonctionne une seule fois, jusqu'au {until}.",
    "link.confirm": "Se connecter en tant que {name}",
    "link.why": "Rien ne se passe avant que vous n'appuyiez sur le bouton : un analyseur de courriels "
    "qui ouvre le lien ne peut pas l'utiliser.",
    "link.invalid_title": "Ce lien ne peut pas être utilisé",
    "link.invalid": "Il a déjà servi, a expiré ou est incomplet. Connectez-vous avec votre adresse "
    "e-mail et votre mot de passe, ou demandez un nouveau lien.",
    "link.to_sign_in": "Aller à la page de connexion",
}
