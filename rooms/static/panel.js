// The viewer's interaction panel: chat, Q&A, polls, calls-to-action, rating, help bot, and a
// banner for the live state. Mount it into any element:
//
//   import {mountInteraction} from "/rooms/static/panel.js";
//   mountInteraction(document.getElementById("interaction"), {webinarId, csrfToken, lang});
//
// Texts come from the page's `<script type="application/json" id="room-i18n">` block (keys
// `room.*`, rendered by rooms/templates/_room_i18n.html). Everything a participant wrote is
// inserted as text, never as HTML.

import {RoomClient, RoomError, ensureToken, exposeForTests, forgetToken, readTexts, translator} from "./room-client.js";
import {PARTS, RoomModel} from "./room-model.js";
import {clock, el, keepAtEnd, safeUrl, setChildren, syncList, tabList, uid} from "./dom.js";

const QUESTION_MIN = 3;
const HELP_MIN = 2;
/** How often the viewer page's player state goes to the server (`heartbeat`: attention time, R-ANA-1). */
const HEARTBEAT_MS = 15000;
const MAX_POSITION_S = 24 * 3600;

/**
 * Start a room view (the viewer panel, the moderator page) once its `client` is made: its model
 * (restored from the client's session snapshot, else empty), its DOM (`view.build()`), the test
 * hooks (`window.webinarRoom.model` / `.panel`), its events (`view.wire()`, which calls
 * {@link wireRoomView}); a restored model is drawn at once (`view.renderAll()`).
 */
export function startRoomView(view) {
  const client = view.client;
  view.model = client.restored ? RoomModel.fromJSON(client.restored) : new RoomModel();
  view.build();
  exposeForTests(client);
  window.webinarRoom.model = view.model;
  window.webinarRoom.panel = view;
  view.wire();
  if (client.restored) view.renderAll();
}

/**
 * What every room view does with its client's status, maintenance and welcome: the connection line
 * (`view.renderConnection(status)`), the page's maintenance notice, and on welcome the snapshot
 * loaded (unless the session resumed) and everything drawn (`view.renderAll()`), then `onWelcome()`.
 */
export function wireRoomView(view, onWelcome = () => {}) {
  const c = view.client;
  c.on("status", (status) => view.renderConnection(status));
  followMaintenance(c, view.t);
  c.on("welcome", ({state, resumed}) => {
    view.everConnected = true;
    if (!resumed && state) view.model.loadState(state);
    view.renderAll();
    onWelcome();
  });
}

/**
 * Draw the named parts of a room view, each once, in the order given: part "qa" is
 * `view.renderQa()`. Only the model's {@link PARTS} count; a part the view does not show (no such
 * method: "help" on the moderator page, "moderation" on the viewer panel) is skipped.
 */
export function renderParts(view, parts) {
  for (const part of new Set(parts)) {
    if (!PARTS.includes(part)) continue;
    const render = view[`render${part[0].toUpperCase()}${part.slice(1)}`];
    if (typeof render === "function") render.call(view);
  }
}

/** The connection line of a room page (`view.connection` in `view.root`): `refusedText`
 *  when refused, "connecting" / "reconnecting" while not connected, hidden otherwise. */
export function showConnection(view, status, refusedText) {
  const t = view.t;
  let text = "";
  if (status === "refused") text = refusedText;
  else if (status === "connecting" || status === "waiting") {
    text = view.everConnected ? t("room.status.reconnecting") : t("room.status.connecting");
  }
  view.connection.textContent = text;
  view.connection.hidden = !text;
  view.connection.classList.toggle("room-error", status === "refused");
  view.root.dataset.connection = status;
}

/** The message to show for a refusal (`room.error.<code>`, else the server's words). */
export function errorText(t, error) {
  const code = error instanceof RoomError ? error.code : "failed";
  const key = `room.error.${code}`;
  const text = t(key);
  if (text !== key) return text;
  return error && error.message ? error.message : t("room.error.failed");
}

/**
 * Show, update or hide the page's maintenance notice (`#maintenance-notice` in
 * server/templates/base.html) from the room notice `maintenance`: `data` is
 * `{enabled, message}`; the message (at most 500 characters) is inserted as text. The title is
 * `maintenance.notice` from the page's room-i18n texts (kept as rendered when the page lacks it).
 */
export function showMaintenance(data, t, doc = document) {
  const box = doc.getElementById("maintenance-notice");
  if (!box) return;
  const enabled = Boolean(data && data.enabled);
  if (enabled) {
    const title = doc.getElementById("maintenance-notice-title");
    const text = t("maintenance.notice");
    if (title && text !== "maintenance.notice") title.textContent = text;
    const message = doc.getElementById("maintenance-notice-message");
    if (message) message.textContent = typeof data.message === "string" ? data.message : "";
  }
  box.hidden = !enabled;
}

/** Keep the maintenance notice in step with the room (viewer panel, moderator and speaker pages);
 * returns a function that stops it. */
export function followMaintenance(client, t) {
  return client.on("notice:maintenance", (data) => showMaintenance(data, t));
}

/** Poll results as labelled bars (a list; each row says "label: n (p %)"). */
export function renderResults(container, poll, t) {
  const tally = poll.tally;
  if (!tally) {
    container.hidden = true;
    container.replaceChildren();
    return;
  }
  container.hidden = false;
  const total = tally.voters || 0;
  const rows = poll.options.map((option, index) => {
    const count = tally.counts[index] || 0;
    const percent = total ? Math.round((count * 100) / total) : 0;
    const bar = el("span", {class: "room-bar", "aria-hidden": "true"}, el("span", {class: "room-bar-fill"}));
    bar.firstChild.style.width = `${percent}%`;
    return el("li", {class: "room-result", dataset: {option: index, count}},
              el("span", {class: "room-result-label"}, option), bar,
              el("span", {class: "room-result-count"}, t("room.poll.count", {count, percent})));
  });
  setChildren(container,
              el("p", {class: "room-voters"}, t("room.poll.voters", {count: total})),
              el("ol", {class: "room-results-list", "aria-label": t("room.poll.results")}, rows));
}

/** One chat line: author, role badge for staff, text, time. */
export function chatLine(message, t, lang) {
  const role = message.author?.role;
  return [
    el("span", {class: "room-author"}, message.author?.name || ""),
    role && role !== "viewer" ? el("span", {class: `room-badge room-role-${role}`}, t(`room.role.${role}`)) : null,
    el("span", {class: "room-text"}, message.text),
    el("time", {class: "room-time", datetime: message.at || ""}, clock(message.at, lang)),
  ];
}

function stars(count, t) {
  const n = Math.max(0, Math.min(5, Number(count) || 0));
  return el("span", {class: "room-stars-shown", role: "img", "aria-label": t("room.rate.stars_label", {stars: n})},
            "★".repeat(n) + "☆".repeat(5 - n));
}

export {stars as starsShown};

class InteractionPanel {
  constructor(root, {webinarId, token, staff, t, lang, tokenFromStorage, remount}) {
    this.root = root;
    this.webinarId = webinarId;
    this.t = t;
    this.lang = lang;
    this.tokenFromStorage = tokenFromStorage;
    this.remount = remount;
    this.sentForms = new Set();
    this.pendingImpressions = new Set();
    this.visibleCtas = new Set();
    this.everConnected = false;
    this.client = new RoomClient({webinarId, token: staff ? null : token, scope: "panel",
                                  snapshot: () => this.model.toJSON()});
    startRoomView(this);
  }

  // Building -----------------------------------------------------------------------------------
  build() {
    const t = this.t;
    this.root.classList.add("room-panel");
    this.connection = el("p", {class: "room-connection", role: "status"}, t("room.status.connecting"));
    this.banner = el("p", {class: "room-live", role: "status", "aria-live": "polite", hidden: true});
    this.ctaList = el("ul", {class: "room-cta-list"});
    this.ctaArea = el("section", {class: "room-ctas", "aria-label": t("room.cta.area"), hidden: true}, this.ctaList);

    const sections = {
      chat: this.buildChat(),
      qa: this.buildQa(),
      polls: this.buildPolls(),
      rate: this.buildRate(),
      help: this.buildHelp(),
    };
    this.tabs = tabList(t("room.tabs"), Object.entries(sections).map(([id, panel]) => ({id, panel, label: t(`room.tab.${id}`)})));
    this.root.replaceChildren(this.connection, this.banner, this.ctaArea, this.tabs.element, ...Object.values(sections));
    this.observer = "IntersectionObserver" in window
      ? new IntersectionObserver((entries) => this.onCtaVisibility(entries), {threshold: 0.5}) : null;
  }

  buildChat() {
    const t = this.t;
    const inputId = uid("room-chat-input");
    this.slowNote = el("p", {class: "room-note room-slow", hidden: true});
    this.muteNote = el("p", {class: "room-note room-muted", hidden: true});
    this.chatList = el("ol", {class: "room-chat-list", role: "log", "aria-live": "polite", "aria-relevant": "additions",
                              "aria-label": t("room.chat.messages")});
    this.chatEmpty = el("p", {class: "hint room-empty"}, t("room.chat.empty"));
    this.chatInput = el("input", {id: inputId, name: "text", maxlength: 500, autocomplete: "off", required: true});
    this.chatButton = el("button", {type: "submit"}, t("room.chat.send"));
    this.chatError = el("p", {class: "room-error", role: "alert"});
    this.chatForm = el("form", {class: "room-chat-form"},
                       el("label", {for: inputId, class: "room-sr"}, t("room.chat.label")),
                       el("div", {class: "room-inline"}, this.chatInput, this.chatButton),
                       this.chatError);
    this.chatForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendChat();
    });
    return el("section", {id: uid("room-sec-chat"), class: "room-section room-chat"},
              this.chatEmpty, this.chatList, this.slowNote, this.muteNote, this.chatForm);
  }

  buildQa() {
    const t = this.t;
    this.qaText = el("textarea", {name: "text", rows: 2, maxlength: 500, minlength: QUESTION_MIN, required: true});
    this.qaAnonymous = el("input", {type: "checkbox", name: "anonymous"});
    this.qaButton = el("button", {type: "submit"}, t("room.qa.ask"));
    this.qaError = el("p", {class: "room-error", role: "alert"});
    this.qaStatus = el("p", {class: "room-note", role: "status"});
    const form = el("form", {class: "room-qa-form"},
                    el("label", {}, t("room.qa.label"), this.qaText),
                    el("label", {class: "inline"}, this.qaAnonymous, t("room.qa.anonymous")),
                    el("div", {class: "room-inline"}, this.qaButton), this.qaError, this.qaStatus);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.askQuestion();
    });
    this.qaList = el("ol", {class: "room-qa-list", "aria-label": t("room.qa.list")});
    this.qaEmpty = el("p", {class: "hint room-empty"}, t("room.qa.empty"));
    return el("section", {id: uid("room-sec-qa"), class: "room-section room-qa"}, form, this.qaEmpty, this.qaList);
  }

  buildPolls() {
    this.pollList = el("ol", {class: "room-poll-list"});
    this.pollEmpty = el("p", {class: "hint room-empty"}, this.t("room.poll.empty"));
    return el("section", {id: uid("room-sec-polls"), class: "room-section room-polls"}, this.pollEmpty, this.pollList);
  }

  buildRate() {
    const t = this.t;
    const name = uid("room-stars");
    this.starLabels = [];
    const choices = [1, 2, 3, 4, 5].map((n) => {
      const input = el("input", {type: "radio", name, value: n, class: "room-sr-input", required: n === 1});
      const label = el("label", {class: "room-star"}, input, el("span", {"aria-hidden": "true"}, "★"),
                       el("span", {class: "room-sr"}, t("room.rate.stars_label", {stars: n})));
      this.starLabels.push(label);
      input.addEventListener("change", () => this.showStars(n));
      return label;
    });
    this.rateComment = el("textarea", {name: "comment", rows: 2, maxlength: 1000});
    this.rateButton = el("button", {type: "submit"}, t("room.rate.send"));
    this.rateError = el("p", {class: "room-error", role: "alert"});
    this.rateStatus = el("p", {class: "room-note", role: "status"});
    this.rateForm = el("form", {class: "room-rate-form"},
                       el("fieldset", {class: "room-stars"}, el("legend", {}, t("room.rate.legend")), choices),
                       el("label", {}, t("room.rate.comment"), this.rateComment),
                       el("div", {class: "room-inline"}, this.rateButton), this.rateError, this.rateStatus);
    this.rateForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendRating();
    });
    this.ratingList = el("ol", {class: "room-rating-list", "aria-label": t("room.rate.comments")});
    this.ratingEmpty = el("p", {class: "hint room-empty"}, t("room.rate.empty"));
    return el("section", {id: uid("room-sec-rate"), class: "room-section room-rate"},
              this.rateForm, el("h3", {}, t("room.rate.comments")), this.ratingEmpty, this.ratingList);
  }

  showStars(n) {
    this.starLabels.forEach((label, i) => label.classList.toggle("on", i < n));
  }

  buildHelp() {
    const t = this.t;
    this.helpInput = el("input", {name: "text", maxlength: 300, minlength: HELP_MIN, required: true, autocomplete: "off"});
    this.helpButton = el("button", {type: "submit"}, t("room.help.ask"));
    this.helpError = el("p", {class: "room-error", role: "alert"});
    const form = el("form", {class: "room-help-form"},
                    el("p", {class: "hint"}, t("room.help.intro")),
                    el("label", {}, t("room.help.label"), this.helpInput),
                    el("div", {class: "room-inline"}, this.helpButton), this.helpError);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.askHelp();
    });
    this.helpList = el("ol", {class: "room-help-list", "aria-live": "polite"});
    return el("section", {id: uid("room-sec-help"), class: "room-section room-help"}, form, this.helpList);
  }

  // Wiring -------------------------------------------------------------------------------------
  wire() {
    const c = this.client;
    wireRoomView(this, () => {
      this.flushImpressions();
      this.attachPlayer();
    });
    c.on("event", (event) => {
      const parts = this.model.apply(event, c.role);
      renderParts(this, parts);
      if (event.kind === "poll.opened") this.tabs.flag("polls", this.t("room.tab.new"));
      if (event.kind === "chat.message") this.tabs.flag("chat", this.t("room.tab.new"));
      if (event.kind === "help.answer" || event.kind === "help.forwarded") this.tabs.flag("help", this.t("room.tab.new"));
    });
    c.on("notice", (notice) => {
      if (this.model.applyNotice(notice.kind)) {
        this.renderBanner();
        c.touch();
      }
    });
    c.on("refused", (reason) => this.onRefused(reason));
    c.start();
  }

  /** On the viewer page: report the player's state every 15 s through the room (once attached). */
  attachPlayer() {
    const player = window.webinarPlayer;
    if (this.playerAttached || !player || typeof player.setHealthSink !== "function") return;
    this.playerAttached = true;
    player.setHealthSink(() => this.heartbeat(player), HEARTBEAT_MS);
  }

  heartbeat(player) {
    if (!this.client.connected) return;
    const video = player.video;
    const playing = Boolean(video && !video.paused && !video.ended && video.readyState >= 3);
    const position = video && Number.isFinite(video.currentTime) ? Math.min(MAX_POSITION_S, Math.max(0, video.currentTime)) : 0;
    this.client.send("heartbeat", {playing, visible: document.visibilityState === "visible",
                                   mode: player.state === "replay" ? "replay" : "live", position}).catch(() => {});
  }

  onRefused(reason) {
    if ((reason === "bad_token" || reason === "wrong_room") && this.tokenFromStorage && this.remount) {
      // The stored token is no longer valid (another server, a reset): ask for a name again.
      forgetToken(this.webinarId);
      this.client.forget();
      this.client.stop();
      this.remount();
      return;
    }
    this.renderConnection("refused");
    for (const control of this.root.querySelectorAll("input, textarea, button, select")) {
      if (!control.closest(".room-tabs")) control.disabled = true;
    }
  }

  // Rendering ----------------------------------------------------------------------------------
  renderAll() {
    renderParts(this, PARTS);
    this.renderBanner();
  }

  renderConnection(status) {
    const t = this.t;
    const reason = this.client.refusedReason;
    const refused = reason === "banned" ? t("room.refused.banned")
      : reason === "room_closed" ? t("room.refused.room_closed") : t("room.refused.other");
    showConnection(this, status, refused);
  }

  renderBanner() {
    const state = this.model.liveState();
    const text = {interrupted: this.t("room.live.interrupted"), ended: this.t("room.live.ended")}[state] || "";
    this.banner.textContent = text;
    this.banner.hidden = !text;
    this.root.dataset.live = state;
  }

  renderSettings() {
    const t = this.t;
    const slow = this.model.slowModeS;
    this.slowNote.hidden = !slow;
    this.slowNote.textContent = slow ? t("room.chat.slow_mode", {seconds: slow}) : "";
    const muted = this.model.myMuteUntil > Date.now();
    this.muteNote.hidden = !muted;
    this.muteNote.textContent = muted ? t("room.chat.muted_until", {time: clock(new Date(this.model.myMuteUntil).toISOString(), this.lang)}) : "";
  }

  renderChat() {
    keepAtEnd(this.chatList, () => {
      syncList(this.chatList, this.model.chat, (m) => m.message_id,
               (m) => el("li", {class: "room-message", dataset: {messageId: m.message_id}}, chatLine(m, this.t, this.lang)),
               () => {});
      this.chatEmpty.hidden = this.model.chat.length > 0;
    });
  }

  renderQa() {
    const t = this.t;
    const mine = new Set(this.model.myUpvotes);
    const questions = this.model.sortedQuestions();
    syncList(this.qaList, questions, (q) => q.question_id, (q) => {
      const count = el("span", {class: "room-upvotes"});
      const button = el("button", {type: "button", class: "room-upvote"}, el("span", {"aria-hidden": "true"}, "▲ "), count);
      button.addEventListener("click", () => this.upvote(q.question_id, button));
      return el("li", {class: "room-question", dataset: {questionId: q.question_id}},
                el("p", {class: "room-q-text"}, q.text),
                el("p", {class: "room-q-meta"}, el("span", {class: "room-q-author"}), el("span", {class: "room-q-badges"})),
                button);
    }, (node, q) => {
      node.querySelector(".room-q-author").textContent = q.author ? q.author
        : q.source === "registration" ? t("room.qa.from_registration") : t("room.qa.anonymous_author");
      const badges = node.querySelector(".room-q-badges");
      setChildren(badges, q.status === "highlighted" ? el("span", {class: "room-badge room-highlighted"}, t("room.qa.highlighted")) : null,
                  q.status === "answered" ? el("span", {class: "room-badge room-answered"}, t("room.qa.answered")) : null);
      node.classList.toggle("is-highlighted", q.status === "highlighted");
      node.classList.toggle("is-answered", q.status === "answered");
      node.querySelector(".room-upvotes").textContent = String(q.upvotes);
      const button = node.querySelector(".room-upvote");
      const used = mine.has(q.question_id);
      button.disabled = used;
      button.setAttribute("aria-pressed", used ? "true" : "false");
      button.setAttribute("aria-label", t(used ? "room.qa.upvoted" : "room.qa.upvote", {count: q.upvotes}));
    });
    this.qaEmpty.hidden = questions.length > 0;
  }

  renderPolls() {
    const t = this.t;
    const polls = this.model.polls.filter((p) => p.state === "open" || p.state === "closed")
      .sort((a, b) => (a.state === "open" ? 0 : 1) - (b.state === "open" ? 0 : 1) || b.poll_id - a.poll_id);
    syncList(this.pollList, polls, (p) => p.poll_id, (p) => this.createPoll(p), (node, p) => {
      const open = p.state === "open";
      node.querySelector(".room-poll-state").textContent = t(open ? "room.poll.open" : "room.poll.closed");
      node.classList.toggle("is-closed", !open);
      for (const input of node.querySelectorAll("input")) input.disabled = !open;
      const button = node.querySelector(".room-vote");
      button.disabled = !open;
      button.hidden = !open;
      button.textContent = t(p.my_choices ? "room.poll.change_vote" : "room.poll.vote");
      if (!node.dataset.dirty && p.my_choices) {
        for (const input of node.querySelectorAll("input")) input.checked = p.my_choices.includes(Number(input.value));
      }
      const status = node.querySelector(".room-poll-status");
      status.textContent = p.my_choices ? t("room.poll.voted") : "";
      node.querySelector(".room-poll-private").hidden = !(p.results === "moderators" && !p.tally);
      renderResults(node.querySelector(".room-results"), p, t);
    });
    this.pollEmpty.hidden = polls.length > 0;
  }

  createPoll(p) {
    const t = this.t;
    const name = uid("room-poll");
    const legendId = uid("room-poll-q");
    const options = p.options.map((option, index) => el("label", {class: "inline room-option"},
      el("input", {type: p.multiple ? "checkbox" : "radio", name, value: index}), option));
    const node = el("li", {class: "room-poll", dataset: {pollId: p.poll_id}});
    const form = el("form", {class: "room-poll-form"},
                    el("fieldset", {"aria-labelledby": legendId},
                       el("p", {class: "hint"}, t(p.multiple ? "room.poll.several" : "room.poll.one")), options),
                    el("div", {class: "room-inline"}, el("button", {type: "submit", class: "room-vote"}, t("room.poll.vote"))),
                    el("p", {class: "room-note room-poll-status", role: "status"}),
                    el("p", {class: "room-error", role: "alert"}));
    form.addEventListener("change", () => { node.dataset.dirty = "1"; });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.vote(p.poll_id, node);
    });
    node.append(el("h3", {class: "room-poll-question", id: legendId}, p.question, " ",
                   el("span", {class: "room-badge room-poll-state"})),
                form,
                el("p", {class: "hint room-poll-private", hidden: true}, t("room.poll.private")),
                el("div", {class: "room-results", hidden: true}));
    return node;
  }

  renderCtas() {
    const pushed = this.model.ctas.filter((c) => c.state === "pushed");
    syncList(this.ctaList, pushed, (c) => c.cta_id, (c) => this.createCta(c), () => {});
    this.ctaArea.hidden = pushed.length === 0;
    for (const id of [...this.visibleCtas]) if (!pushed.some((c) => c.cta_id === id)) this.visibleCtas.delete(id);
  }

  createCta(c) {
    const t = this.t;
    const node = el("li", {class: "room-cta card", dataset: {ctaId: c.cta_id}});
    const image = safeUrl(c.image_url);
    if (image) node.append(el("img", {class: "room-cta-image", src: image, alt: "", loading: "lazy"}));
    if (c.body) node.append(el("p", {class: "room-cta-body"}, c.body));
    const url = safeUrl(c.url);
    if (url) {
      const link = el("a", {class: "room-cta-link button", href: url, target: "_blank", rel: "noopener"}, c.label);
      link.addEventListener("click", () => this.ctaSend("cta.click", c.cta_id).catch(() => {}));
      node.append(link);
    } else {
      node.append(el("p", {class: "room-cta-label"}, c.label));
    }
    if (c.form_fields && c.form_fields.length) node.append(this.createCtaForm(c));
    if (this.observer) this.observer.observe(node);
    else this.impression(c.cta_id);
    return node;
  }

  createCtaForm(c) {
    const t = this.t;
    const fields = c.form_fields.map((field) => {
      const control = field === "message"
        ? el("textarea", {name: field, rows: 2, maxlength: 500})
        : el("input", {name: field, maxlength: 500, autocomplete: {phone: "tel", company: "organization",
                                                                     job_function: "organization-title"}[field] || "off",
                       type: field === "phone" ? "tel" : "text"});
      return el("label", {}, t(`cta.field.${field}`), control);
    });
    const consent = el("input", {type: "checkbox", name: "consent", required: true});
    const error = el("p", {class: "room-error", role: "alert"});
    const form = el("form", {class: "room-cta-form"}, fields,
                    el("label", {class: "inline room-consent"}, consent, c.consent_text || t("room.cta.consent")),
                    el("div", {class: "room-inline"}, el("button", {type: "submit"}, t("room.cta.send"))), error);
    if (this.sentForms.has(c.cta_id)) {
      return el("p", {class: "room-note"}, t("room.cta.sent"));
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      error.textContent = "";
      if (!consent.checked) {
        error.textContent = t("room.error.consent_required");
        return;
      }
      const values = {};
      for (const field of c.form_fields) {
        const value = form.elements[field].value.trim();
        if (value) values[field] = value;
      }
      const button = form.querySelector("button");
      button.disabled = true;
      try {
        await this.ctaSend("cta.submit", c.cta_id, {fields: values, consent: true});
        this.sentForms.add(c.cta_id);
        form.replaceWith(el("p", {class: "room-note", role: "status"}, t("room.cta.sent")));
      } catch (failure) {
        error.textContent = errorText(t, failure);
        button.disabled = false;
      }
    });
    return form;
  }

  ctaMode() {
    return this.model.webinar.state === "replay" ? "replay" : "live";
  }

  ctaSend(type, ctaId, fields = {}) {
    return this.client.send(type, {cta_id: ctaId, mode: this.ctaMode(), ...fields});
  }

  onCtaVisibility(entries) {
    for (const entry of entries) {
      const id = Number(entry.target.dataset.ctaId);
      if (entry.isIntersecting) {
        this.visibleCtas.add(id);
        this.impression(id);
      } else {
        this.visibleCtas.delete(id);
      }
    }
  }

  flushImpressions() {
    for (const id of this.visibleCtas) this.impression(id);
  }

  /** Once per CTA and participant page: when it is on screen (half of it at least). */
  impression(ctaId) {
    if (this.model.impressions.includes(ctaId) || this.pendingImpressions.has(ctaId) || !this.client.connected) return;
    this.pendingImpressions.add(ctaId);
    this.ctaSend("cta.impression", ctaId).then(() => {
      this.model.impressions.push(ctaId);
      this.client.touch();
    }, () => {}).finally(() => this.pendingImpressions.delete(ctaId));
  }

  renderRatings() {
    syncList(this.ratingList, this.model.ratings, (r) => r.rating_id,
             () => el("li", {class: "room-rating"}), (node, r) => {
               node.dataset.ratingId = r.rating_id;
               setChildren(node, stars(r.stars, this.t), " ", el("span", {class: "room-author"}, r.author || ""),
                           r.comment ? el("p", {class: "room-text"}, r.comment) : null);
             });
    this.ratingEmpty.hidden = this.model.ratings.length > 0;
  }

  renderHelp() {
    const t = this.t;
    syncList(this.helpList, this.model.help, (h) => h.request_id, () => el("li", {class: "room-help-item"}), (node, h) => {
      setChildren(node, el("p", {class: "room-help-question"}, h.question),
                  h.answer !== null
                    ? el("p", {class: "room-help-answer"}, h.answer)
                    : el("p", {class: "room-help-forwarded hint"}, t("room.help.forwarded")));
    });
  }

  // Actions ------------------------------------------------------------------------------------
  async sendChat() {
    const text = this.chatInput.value.trim();
    this.chatError.textContent = "";
    if (!text) return;
    this.chatButton.disabled = true;
    try {
      await this.client.send("chat.send", {text});
      this.chatInput.value = "";
      if (this.model.slowModeS && this.client.role !== "moderator") {
        setTimeout(() => { this.chatButton.disabled = false; }, this.model.slowModeS * 1000);
        return;
      }
    } catch (error) {
      this.chatError.textContent = errorText(this.t, error);
    }
    this.chatButton.disabled = false;
  }

  async askQuestion() {
    const text = this.qaText.value.trim();
    this.qaError.textContent = "";
    this.qaStatus.textContent = "";
    if (text.length < QUESTION_MIN) {
      this.qaError.textContent = this.t("room.qa.too_short", {min: QUESTION_MIN});
      return;
    }
    this.qaButton.disabled = true;
    try {
      await this.client.send("qa.ask", {text, anonymous: this.qaAnonymous.checked});
      this.qaText.value = "";
      this.qaStatus.textContent = this.t("room.qa.sent");
    } catch (error) {
      this.qaError.textContent = errorText(this.t, error);
    } finally {
      this.qaButton.disabled = false;
    }
  }

  async upvote(questionId, button) {
    button.disabled = true;
    try {
      await this.client.send("qa.upvote", {question_id: questionId});
      if (!this.model.myUpvotes.includes(questionId)) this.model.myUpvotes.push(questionId);
      this.client.touch();
    } catch (error) {
      button.disabled = false;
      this.qaError.textContent = errorText(this.t, error);
    }
    this.renderQa();
  }

  async vote(pollId, node) {
    const error = node.querySelector(".room-error");
    error.textContent = "";
    const choices = [...node.querySelectorAll("input:checked")].map((input) => Number(input.value));
    if (!choices.length) {
      error.textContent = this.t("room.poll.choose");
      return;
    }
    const button = node.querySelector(".room-vote");
    button.disabled = true;
    try {
      const ack = await this.client.send("poll.vote", {poll_id: pollId, choices});
      const poll = this.model.poll(pollId);
      if (poll) poll.my_choices = ack.choices || choices;
      delete node.dataset.dirty;
      this.client.touch();
    } catch (failure) {
      error.textContent = errorText(this.t, failure);
    }
    button.disabled = false;
    this.renderPolls();
  }

  async sendRating() {
    const t = this.t;
    this.rateError.textContent = "";
    this.rateStatus.textContent = "";
    const chosen = this.rateForm.querySelector("input[type=radio]:checked");
    if (!chosen) {
      this.rateError.textContent = t("room.rate.choose");
      return;
    }
    this.rateButton.disabled = true;
    try {
      await this.client.send("rating.submit", {stars: Number(chosen.value), comment: this.rateComment.value.trim()});
      this.rateStatus.textContent = t("room.rate.thanks");
    } catch (error) {
      this.rateError.textContent = errorText(t, error);
    } finally {
      this.rateButton.disabled = false;
    }
  }

  async askHelp() {
    const text = this.helpInput.value.trim();
    this.helpError.textContent = "";
    if (text.length < HELP_MIN) {
      this.helpError.textContent = this.t("room.help.too_short");
      return;
    }
    this.helpButton.disabled = true;
    try {
      await this.client.send("help.ask", {text});
      this.helpInput.value = "";
    } catch (error) {
      this.helpError.textContent = errorText(this.t, error);
    } finally {
      this.helpButton.disabled = false;
    }
  }
}

/**
 * Render the interaction panel into `element` and connect it to the room.
 * Viewers need a join token: `token`, else `?token=` in the page address, else one stored in
 * this browser, else a "your name" form (posted with `csrfToken`). Staff (`staff: true`) use
 * their login cookie. Resolves with the panel once connecting.
 */
export async function mountInteraction(element, {webinarId, token = null, csrfToken = "", lang = "fr", staff = false,
                                                 texts = null} = {}) {
  const t = translator(texts || readTexts());
  element.hidden = false;
  element.classList.add("room-panel");
  element.setAttribute("lang", lang);
  element.replaceChildren();
  let useToken = token;
  const tokenFromStorage = !staff && !token;
  if (tokenFromStorage) useToken = await ensureToken({webinarId, csrfToken, container: element, t});
  const remount = () => mountInteraction(element, {webinarId, token: null, csrfToken, lang, staff, texts});
  return new InteractionPanel(element, {webinarId, token: useToken, staff, t, lang, tokenFromStorage, remount});
}
