/*
 * CSAT rating widget: <csat-rating> asks one question and posts the answer to the collector.
 * No framework, no dependencies. Drop it into any page:
 *
 *   <script src="https://collect.example.com/widget.js" defer></script>
 *   <csat-rating key="pk_..." customer-id="cus_1042" customer-proof="v1.1767225600.5f0c..."
 *                metric="csat" scale="1-5" question="How was your delivery?"
 *                segment='{"store":"paris-1"}'></csat-rating>
 *
 * Attributes: key (the source's publishable key, pk_...; never a secret sk_ key), customer-id
 * (required), customer-proof (computed by the site's server, so the answer counts as this customer's:
 * without it the answer is anonymous), metric (csat|nps|ces),
 * scale, question, segment (JSON object), touchpoint, survey-id, locale (en|fr), comment
 * ("optional" or "none"), rating-id (else a random id, reused for retries), endpoint (defaults to
 * where this script was loaded from).
 * Events: "csat-submitted" {detail: {rating_id, score}} and "csat-error" {detail: {status, detail}}.
 *
 * In-app survey invitations: with the attribute `invitation` (and key, customer-id, customer-proof), the
 * widget first asks the collector whether a survey invitation waits for this customer
 * (POST /v1/widget/invitation); it shows nothing (data-state="none") when none does, else that survey's
 * question, scale and language, and answers through the invitation's signed link, as its email would
 * (a second, different answer within the survey's re-click window replaces the first; then 409).
 *
 *   <csat-rating invitation key="pk_..." customer-id="cus_1042" customer-proof="v1.1767225600.5f0c..."></csat-rating>
 */
(function () {
  "use strict";
  if (window.customElements === undefined || customElements.get("csat-rating")) return;

  var SCRIPT_ORIGIN = (function () {
    try {
      return new URL(document.currentScript.src).origin;
    } catch (e) {
      return window.location.origin;
    }
  })();

  var TEXT = {
    en: {
      question: "How satisfied are you?",
      comment: "Anything to add? (optional)",
      send: "Send",
      sending: "Sending\u2026",
      thanks: "Thank you for your answer!",
      failed: "Sorry, your answer could not be sent.",
      already: "You have already answered this survey.",
      closed: "This survey is closed.",
      retry: "Try again",
      notLikely: "Not likely",
      veryLikely: "Very likely",
      hard: "Very difficult",
      easy: "Very easy",
      lowEffort: "Very little effort",
      highEffort: "A lot of effort",
      yes: "Yes",
      no: "No",
    },
    fr: {
      question: "\u00cates-vous satisfait\u00a0?",
      comment: "Un commentaire\u00a0? (facultatif)",
      send: "Envoyer",
      sending: "Envoi\u2026",
      thanks: "Merci pour votre r\u00e9ponse\u00a0!",
      failed: "D\u00e9sol\u00e9, votre r\u00e9ponse n'a pas pu \u00eatre envoy\u00e9e.",
      already: "Vous avez d\u00e9j\u00e0 r\u00e9pondu \u00e0 cette enqu\u00eate.",
      closed: "Cette enqu\u00eate est close.",
      retry: "R\u00e9essayer",
      notLikely: "Peu probable",
      veryLikely: "Tr\u00e8s probable",
      hard: "Tr\u00e8s difficile",
      easy: "Tr\u00e8s facile",
      lowEffort: "Tr\u00e8s peu d'effort",
      highEffort: "Beaucoup d'effort",
      yes: "Oui",
      no: "Non",
    },
  };

  var DEFAULT_SCALE = { csat: "1-5", nps: "0-10", ces: "1-7" };
  var ALIASES = { stars: "1-5", smileys: "1-3", smiley: "1-3", yesno: "yes-no", "likert-5": "1-5" };

  /* The choices a scale offers, mirroring shared/scales.py: [value, face, accessible label]. */
  function choices(metric, scale, t) {
    var i;
    var out = [];
    if (metric === "csat" && scale === "1-5") {
      var likert = ["Very dissatisfied", "Dissatisfied", "Neutral", "Satisfied", "Very satisfied"];
      for (i = 1; i <= 5; i++) out.push([i, "\u2605", i + "/5 " + likert[i - 1]]);
      return out;
    }
    if (metric === "csat" && scale === "1-3") {
      return [
        [1, "\uD83D\uDE1E", "1/3 unhappy"],
        [2, "\uD83D\uDE10", "2/3 neutral"],
        [3, "\uD83D\uDE00", "3/3 happy"],
      ];
    }
    if (metric === "csat" && scale === "yes-no") {
      return [
        [1, t.yes, t.yes],
        [0, t.no, t.no],
      ];
    }
    var bounds = { "csat:1-10": [1, 10], "nps:0-10": [0, 10], "ces:1-7": [1, 7], "ces:1-5": [1, 5] };
    var range = bounds[metric + ":" + scale];
    if (!range) return null;
    for (i = range[0]; i <= range[1]; i++) out.push([i, String(i), String(i)]);
    return out;
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "w-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }

  var STYLE =
    ":host{display:block;font:15px/1.4 system-ui,sans-serif;color:#222;max-width:32rem}" +
    ".q{font-weight:600;margin:0 0 .5rem}" +
    ".scores{display:flex;flex-wrap:wrap;gap:.3rem}" +
    "button{font:inherit;cursor:pointer;border:1px solid #bbb;background:#fff;border-radius:.4rem;" +
    "padding:.35rem .6rem;min-width:2.2rem}" +
    "button.star{font-size:1.5rem;border:none;color:#ccc;padding:0 .1rem;background:none}" +
    "button.star.on{color:#f5a623}" +
    "button.sel{background:#1f6feb;color:#fff;border-color:#1f6feb}" +
    "button:focus-visible{outline:2px solid #1f6feb;outline-offset:2px}" +
    ".ends{display:flex;justify-content:space-between;font-size:.8rem;color:#666;margin-top:.2rem}" +
    "textarea{width:100%;box-sizing:border-box;margin:.6rem 0 .4rem;font:inherit;min-height:4rem}" +
    ".send{background:#1f6feb;color:#fff;border-color:#1f6feb}" +
    ".msg{margin:.5rem 0 0}.err{color:#b42318}";

  class CsatRating extends HTMLElement {
    constructor() {
      super();
      this._root = this.attachShadow({ mode: "open" });
      this._score = null;
      this._ratingId = null;
      this._busy = false;
    }

    connectedCallback() {
      if (this._rendered) return;
      this._rendered = true;
      if (this.hasAttribute("invitation")) {
        this._askInvitation();
        return;
      }
      this._render();
    }

    _endpoint() {
      return this._attr("endpoint", SCRIPT_ORIGIN).replace(/\/+$/, "");
    }

    /* The proven customer's pending in-app invitation, if any: shown with its own question and scale. */
    async _askInvitation() {
      var headers = { "Content-Type": "application/json" };
      var key = this._attr("key", null);
      if (key) headers.Authorization = "Bearer " + key;
      var body = { customer: { id: this._attr("customer-id", "") } };
      var proof = this._attr("customer-proof", null);
      if (proof) body.customer.proof = proof;
      var status = 0;
      try {
        var r = await fetch(this._endpoint() + "/v1/widget/invitation", {
          method: "POST",
          headers: headers,
          body: JSON.stringify(body),
          mode: "cors",
          credentials: "omit",
        });
        status = r.status;
        if (r.status === 200) {
          this._offer = await r.json();
          this.setAttribute("data-survey-id", this._offer.survey_id);
          this._render();
          this.setAttribute("data-state", "asking");
          return;
        }
      } catch (e) {
        status = 0;
      }
      this.setAttribute("data-state", status === 204 ? "none" : "error");
      if (status !== 204) {
        this.dispatchEvent(
          new CustomEvent("csat-error", { detail: { status: status, detail: "invitation" }, bubbles: true, composed: true })
        );
      }
    }

    _attr(name, fallback) {
      var v = this.getAttribute(name);
      return v === null || v === "" ? fallback : v;
    }

    _t() {
      var lang = this._offer
        ? this._offer.locale
        : this._attr("locale", (document.documentElement.lang || "en").slice(0, 2));
      return TEXT[lang] || TEXT.en;
    }

    _render() {
      var t = this._t();
      var offer = this._offer;
      var metric = offer ? offer.metric : this._attr("metric", "csat");
      var scale = offer ? offer.scale : this._attr("scale", DEFAULT_SCALE[metric] || "1-5");
      scale = ALIASES[scale] || scale;
      this._metric = metric;
      this._scale = scale;
      var root = this._root;
      root.innerHTML = "";
      var style = document.createElement("style");
      style.textContent = STYLE;
      root.appendChild(style);
      var box = document.createElement("div");
      box.setAttribute("part", "box");
      var q = document.createElement("p");
      q.className = "q";
      q.id = "q";
      q.textContent = offer ? offer.question || t.question : this._attr("question", t.question);
      box.appendChild(q);
      var list = choices(metric, scale, t);
      if (!list) {
        box.appendChild(this._message("unknown scale " + metric + " " + scale, true));
        root.appendChild(box);
        return;
      }
      var row = document.createElement("div");
      row.className = "scores";
      row.setAttribute("role", "radiogroup");
      row.setAttribute("aria-labelledby", "q");
      var self = this;
      var buttons = [];
      list.forEach(function (c) {
        var b = document.createElement("button");
        b.type = "button";
        b.textContent = c[1];
        b.setAttribute("aria-label", c[2]);
        b.setAttribute("role", "radio");
        b.setAttribute("aria-checked", "false");
        b.dataset.score = String(c[0]);
        if (c[1] === "\u2605") b.className = "star";
        b.addEventListener("click", function () {
          self._pick(c[0], buttons);
        });
        buttons.push(b);
        row.appendChild(b);
      });
      box.appendChild(row);
      // End labels carry the scale's direction (CES 1-5 is "how much effort": lower is easier).
      var endLabels = {
        "nps:0-10": [t.notLikely, t.veryLikely],
        "ces:1-7": [t.hard, t.easy],
        "ces:1-5": [t.lowEffort, t.highEffort],
      }[metric + ":" + scale];
      if (endLabels) {
        var ends = document.createElement("div");
        ends.className = "ends";
        ends.innerHTML = "<span></span><span></span>";
        ends.children[0].textContent = endLabels[0];
        ends.children[1].textContent = endLabels[1];
        box.appendChild(ends);
      }
      var form = document.createElement("div");
      form.hidden = true;
      form.className = "more";
      if (this._attr("comment", "optional") !== "none") {
        var ta = document.createElement("textarea");
        ta.setAttribute("aria-label", t.comment);
        ta.placeholder = t.comment;
        ta.maxLength = 5000;
        form.appendChild(ta);
        this._comment = ta;
      }
      var send = document.createElement("button");
      send.type = "button";
      send.className = "send";
      send.textContent = t.send;
      send.addEventListener("click", function () {
        self._submit();
      });
      form.appendChild(send);
      this._sendButton = send;
      box.appendChild(form);
      this._form = form;
      this._status = this._message("", false);
      box.appendChild(this._status);
      root.appendChild(box);
    }

    _message(text, error) {
      var p = document.createElement("p");
      p.className = "msg" + (error ? " err" : "");
      p.setAttribute("role", "status");
      p.textContent = text;
      return p;
    }

    _pick(score, buttons) {
      if (this._busy || this._done) return;
      this._score = score;
      buttons.forEach(function (b) {
        var v = Number(b.dataset.score);
        var on = b.className.indexOf("star") === 0 ? v <= score : v === score;
        b.classList.toggle(b.className.indexOf("star") === 0 ? "on" : "sel", on);
        b.setAttribute("aria-checked", String(v === score));
      });
      this._form.hidden = false;
      if (!this._comment) this._submit();
    }

    _payload() {
      var body = {
        metric: this._metric,
        scale: this._scale,
        score: this._score,
        customer: { id: this._attr("customer-id", "") },
      };
      var proof = this._attr("customer-proof", null);
      if (proof) body.customer.proof = proof;
      var seg = this._attr("segment", null);
      if (seg) {
        try {
          body.segment = JSON.parse(seg);
        } catch (e) {
          body.segment = {};
        }
      }
      var touchpoint = this._attr("touchpoint", null);
      if (touchpoint) body.touchpoint = touchpoint;
      var survey = this._attr("survey-id", null);
      if (survey) body.survey_id = survey;
      var locale = this._attr("locale", null);
      if (locale) body.customer.locale = locale;
      var comment = this._comment ? this._comment.value.trim() : "";
      if (comment) body.comment = comment;
      return body;
    }

    /* An invitation is answered through its signed link, as its email's confirm page does: one answer
       per invitation, the survey's re-click window, 409 after it, 410 once the survey closed. */
    async _answerInvitation() {
      var t = this._t();
      var form = new URLSearchParams();
      form.set("score", String(this._score));
      var comment = this._comment ? this._comment.value.trim() : "";
      if (comment) form.set("comment", comment);
      var last = { status: 0, detail: "network error" };
      for (var attempt = 0; attempt < 4; attempt++) {
        try {
          // The link's path on the collector this widget talks to (answer_url names its public address).
          var target = this._endpoint() + new URL(this._offer.answer_url, this._endpoint()).pathname;
          var r = await fetch(target, {
            method: "POST",
            headers: { Accept: "application/json" },
            body: form,
            mode: "cors",
            credentials: "omit",
          });
          if (r.status === 200) {
            this._finish(null);
            return;
          }
          if (r.status === 409 || r.status === 410) {
            this._finish(null, r.status === 409 ? t.already : t.closed, "closed");
            return;
          }
          last = { status: r.status, detail: r.statusText };
          if (r.status !== 429 && r.status !== 503) break;
          var wait = Number(r.headers.get("Retry-After") || "1");
          await new Promise(function (res) {
            setTimeout(res, Math.min(wait, 10) * 1000);
          });
        } catch (e) {
          last = { status: 0, detail: String(e && e.message ? e.message : e) };
          await new Promise(function (res) {
            setTimeout(res, 500 * (attempt + 1));
          });
        }
      }
      this._failed(last);
    }

    _failed(last) {
      var t = this._t();
      this._busy = false;
      this._sendButton.disabled = false;
      this._sendButton.textContent = t.retry;
      this._status.className = "msg err";
      this._status.textContent = t.failed;
      this.dispatchEvent(new CustomEvent("csat-error", { detail: last, bubbles: true, composed: true }));
    }

    async _submit() {
      if (this._busy || this._done || this._score === null) return;
      var t = this._t();
      this._busy = true;
      this._sendButton.disabled = true;
      this._sendButton.textContent = t.sending;
      this._status.className = "msg";
      this._status.textContent = "";
      if (this._offer) {
        await this._answerInvitation();
        return;
      }
      // One id per answer: retries (ours or the user's) are recorded once.
      this._ratingId = this._ratingId || this._attr("rating-id", null) || uuid();
      var endpoint = this._endpoint() + "/v1/ratings";
      var headers = { "Content-Type": "application/json", "Idempotency-Key": this._ratingId };
      var key = this._attr("key", null);
      if (key) headers.Authorization = "Bearer " + key;
      var body = JSON.stringify(this._payload());
      var last = { status: 0, detail: "network error" };
      for (var attempt = 0; attempt < 4; attempt++) {
        try {
          var r = await fetch(endpoint, { method: "POST", headers: headers, body: body, mode: "cors", credentials: "omit" });
          if (r.status === 202) {
            var ok = await r.json();
            this._finish(ok.rating_id);
            return;
          }
          var problem = {};
          try {
            problem = await r.json();
          } catch (e) {
            problem = {};
          }
          last = { status: r.status, detail: problem.detail || r.statusText };
          if (r.status !== 429 && r.status !== 503 && !(r.status === 409 && r.headers.get("Retry-After"))) break;
          var wait = Number(r.headers.get("Retry-After") || "1");
          await new Promise(function (res) {
            setTimeout(res, Math.min(wait, 10) * 1000);
          });
        } catch (e) {
          last = { status: 0, detail: String(e && e.message ? e.message : e) };
          await new Promise(function (res) {
            setTimeout(res, 500 * (attempt + 1));
          });
        }
      }
      this._failed(last);
    }

    _finish(ratingId, text, state) {
      this._done = true;
      this._busy = false;
      this._form.hidden = true;
      this._status.className = "msg";
      this._status.textContent = text || this._t().thanks;
      this.setAttribute("data-state", state || "submitted");
      if (state) return;
      var detail = { rating_id: ratingId, score: this._score };
      if (this._offer) detail.survey_id = this._offer.survey_id;
      this.dispatchEvent(
        new CustomEvent("csat-submitted", {
          detail: detail,
          bubbles: true,
          composed: true,
        })
      );
    }
  }

  customElements.define("csat-rating", CsatRating);
})();
