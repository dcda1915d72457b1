// The moderator control panel (/w/{id}/moderate): live state, viewers, stream health, chat with
// moderation, room settings, Q&A queue, polls, calls-to-action, help-bot questions, CTA form
// submissions and ratings. Staff connect with their login cookie; the server checks the role.
// Everything participants wrote is inserted as text, never as HTML.

import {RoomClient, readTexts, translator} from "./room-client.js";
import {PARTS} from "./room-model.js";
import {
  chatLine, errorText, renderParts, renderResults, showConnection, starsShown, startRoomView, wireRoomView,
} from "./panel.js";
import {clock, el, keepAtEnd, setChildren, syncList, uid} from "./dom.js";

const MUTE_MINUTES = 10;
const POLL_OPTIONS_MIN = 2;
const POLL_OPTIONS_MAX = 10;
const CONFIRM_MS = 5000;
const HEALTH_STALE_S = 15;

/** A button that asks for a second click (within a few seconds) before `action`. */
function confirmButton(label, confirmLabel, action, attrs = {}) {
  const button = el("button", {type: "button", ...attrs}, label);
  let timer = null;
  button.addEventListener("click", () => {
    if (!button.dataset.armed) {
      button.dataset.armed = "1";
      button.textContent = confirmLabel;
      timer = setTimeout(() => {
        delete button.dataset.armed;
        button.textContent = label;
      }, CONFIRM_MS);
      return;
    }
    clearTimeout(timer);
    delete button.dataset.armed;
    button.textContent = label;
    action();
  });
  return button;
}

function card(title, className, ...children) {
  const headingId = uid("mod-h");
  return el("section", {class: `card mod-card ${className}`, "aria-labelledby": headingId},
            el("h2", {id: headingId}, title), ...children);
}

class ModeratorPanel {
  constructor(root, {webinarId, t, lang}) {
    this.root = root;
    this.t = t;
    this.lang = lang;
    this.nodes = new Map(); // presence: node id -> {count, everyS, at}
    this.health = null;
    this.healthAt = 0;
    this.limitWarning = null;
    this.everConnected = false;
    this.client = new RoomClient({webinarId, scope: "moderate", snapshot: () => this.model.toJSON()});
    startRoomView(this);
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  build() {
    const t = this.t;
    this.connection = el("p", {class: "room-connection", role: "status"}, t("room.status.connecting"));
    this.root.replaceChildren(
      this.connection,
      el("div", {class: "mod-grid"},
         this.buildLive(), this.buildChat(), this.buildQa(), this.buildPolls(), this.buildCtas(),
         this.buildHelp(), this.buildSubmissions(), this.buildRatings()));
  }

  // Live state, viewers, health ----------------------------------------------------------------
  buildLive() {
    const t = this.t;
    this.liveState = el("p", {class: "mod-live-state", role: "status"});
    this.warning = el("p", {class: "room-error mod-warning", role: "alert", hidden: true});
    this.viewers = el("strong", {class: "mod-viewers"}, "—");
    this.healthRows = el("dl", {class: "mod-health"});
    this.healthNote = el("p", {class: "hint mod-health-note"}, t("room.mod.health.none"));
    const refresh = el("button", {type: "button", class: "link"}, t("room.mod.refresh"));
    refresh.addEventListener("click", () => this.client.resync());
    return card(t("room.mod.live"), "mod-live", this.liveState, this.warning,
                el("p", {}, t("room.mod.viewers"), " ", this.viewers),
                el("h3", {}, t("room.mod.health")), this.healthNote, this.healthRows,
                el("p", {class: "actions"}, refresh));
  }

  tick() {
    const now = Date.now();
    let total = 0;
    let known = false;
    for (const [node, info] of this.nodes) {
      if (now - info.at > 3 * info.everyS * 1000) this.nodes.delete(node); // a node that went silent
      else {
        total += info.count;
        known = true;
      }
    }
    this.viewers.textContent = known ? String(total) : "—";
    this.root.dataset.viewers = known ? String(total) : "";
    if (this.health) {
      const age = Math.round((now - this.healthAt) / 1000);
      this.healthNote.textContent = this.t("room.mod.health.updated", {seconds: age});
      this.healthNote.classList.toggle("room-error", age > HEALTH_STALE_S);
    }
  }

  renderLive() {
    const t = this.t;
    const state = this.model.liveState();
    this.liveState.textContent = t(`room.mod.state.${state}`);
    this.root.dataset.live = state;
    this.warning.hidden = !this.limitWarning;
    if (this.limitWarning) {
      this.warning.textContent = t("room.mod.limit_warning", {minutes: Math.max(1, Math.round(this.limitWarning / 60))});
    }
  }

  renderHealth() {
    const t = this.t;
    const h = this.health;
    if (!h) return;
    const rows = [
      ["on_air", h.on_air ? t("room.mod.yes") : t("room.mod.no")],
      ["input_kbps", `${h.input_kbps} kbit/s`],
      ["segments", String(h.segments)],
      ["drops", String(h.drops)],
      ["long_parts", String(h.long_parts)],
      ["codecs", Array.isArray(h.codecs) ? h.codecs.join(", ") : String(h.codecs ?? "")],
      ["live_seconds", duration(h.live_seconds)],
    ];
    setChildren(this.healthRows, rows.flatMap(([key, value]) => [
      el("dt", {}, t(`room.mod.health.${key}`)), el("dd", {dataset: {health: key}}, value)]));
    this.tick();
  }

  // Chat and settings --------------------------------------------------------------------------
  buildChat() {
    const t = this.t;
    this.chatList = el("ol", {class: "room-chat-list mod-chat-list", role: "log", "aria-live": "polite",
                              "aria-relevant": "additions", "aria-label": t("room.chat.messages")});
    this.chatEmpty = el("p", {class: "hint room-empty"}, t("room.chat.empty"));
    this.chatError = el("p", {class: "room-error", role: "alert"});
    const inputId = uid("mod-chat");
    const input = el("input", {id: inputId, maxlength: 500, autocomplete: "off", required: true});
    const send = el("form", {class: "room-chat-form"},
                    el("label", {for: inputId, class: "room-sr"}, t("room.chat.label")),
                    el("div", {class: "room-inline"}, input, el("button", {type: "submit"}, t("room.chat.send"))));
    send.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      this.act("chat.send", {text}, this.chatError).then((ok) => { if (ok) input.value = ""; });
    });

    this.slowInput = el("input", {type: "number", min: 0, max: 600, step: 1, name: "slow_mode_s", value: 0, class: "mod-slow"});
    this.settingsError = el("p", {class: "room-error", role: "alert"});
    this.settingsStatus = el("p", {class: "room-note", role: "status"});
    const slowForm = el("form", {class: "mod-slow-form"},
                        el("label", {}, t("room.mod.slow_mode"), el("span", {class: "room-inline"}, this.slowInput,
                           el("button", {type: "submit"}, t("room.mod.apply")))));
    slowForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const seconds = Math.max(0, Math.min(600, Math.round(Number(this.slowInput.value) || 0)));
      this.act("chat.slow_mode", {seconds}, this.settingsError).then((ok) => {
        if (ok) this.settingsStatus.textContent = t("room.mod.saved");
      });
    });
    this.filterInput = el("textarea", {rows: 2, name: "words", class: "mod-filter"});
    const filterForm = el("form", {class: "mod-filter-form"},
                          el("label", {}, t("room.mod.word_filter"), el("span", {class: "hint"}, t("room.mod.word_filter_hint")),
                             this.filterInput),
                          el("div", {class: "room-inline"}, el("button", {type: "submit"}, t("room.mod.save"))));
    filterForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const words = [...new Set(this.filterInput.value.split(/[\n,]/).map((w) => w.trim()).filter(Boolean))]
        .map((w) => w.slice(0, 50)).slice(0, 200);
      this.act("chat.filter", {words}, this.settingsError).then((ok) => {
        if (ok) this.settingsStatus.textContent = t("room.mod.saved");
      });
    });
    return card(t("room.tab.chat"), "mod-chat", this.chatEmpty, this.chatList, send, this.chatError,
                el("details", {class: "mod-settings"}, el("summary", {}, t("room.mod.settings")), slowForm, filterForm,
                   this.settingsStatus, this.settingsError));
  }

  renderChat() {
    const t = this.t;
    const me = this.client.participant?.id;
    keepAtEnd(this.chatList, () => {
      syncList(this.chatList, this.model.chat, (m) => m.message_id, (m) => {
        const author = m.author || {};
        const name = author.name || "";
        const actions = el("span", {class: "mod-actions"});
        actions.append(el("button", {type: "button", class: "mod-delete danger", "aria-label": t("room.mod.delete_of", {name}),
                                     onclick: () => this.act("chat.delete", {message_id: m.message_id}, this.chatError)},
                          t("room.mod.delete")));
        if (author.id && author.id !== me) {
          actions.append(
            el("button", {type: "button", class: "mod-mute", "aria-label": t("room.mod.mute_of", {name, minutes: MUTE_MINUTES}),
                          onclick: () => this.act("participant.mute", {participant_id: author.id, minutes: MUTE_MINUTES}, this.chatError)},
               t("room.mod.mute", {minutes: MUTE_MINUTES})),
            el("button", {type: "button", class: "mod-unmute", "aria-label": t("room.mod.unmute_of", {name}),
                          onclick: () => this.act("participant.mute", {participant_id: author.id, minutes: 0}, this.chatError)},
               t("room.mod.unmute")),
            confirmButton(t("room.mod.ban"), t("room.mod.ban_confirm"),
                          () => this.act("participant.ban", {participant_id: author.id}, this.chatError),
                          {class: "mod-ban danger", "aria-label": t("room.mod.ban_of", {name})}));
        }
        return el("li", {class: "room-message", dataset: {messageId: m.message_id, authorId: author.id || ""}},
                  chatLine(m, t, this.lang), el("span", {class: "mod-flags"}), actions);
      }, (node, m) => {
        const id = m.author?.id;
        const muted = id && this.model.muted[id] && this.model.muted[id].until > Date.now();
        const banned = id && this.model.banned[id];
        setChildren(node.querySelector(".mod-flags"),
                    muted ? el("span", {class: "room-badge mod-muted"}, t("room.mod.muted")) : null,
                    banned ? el("span", {class: "room-badge mod-banned"}, t("room.mod.banned")) : null);
      });
      this.chatEmpty.hidden = this.model.chat.length > 0;
    });
  }

  renderSettings() {
    if (document.activeElement !== this.slowInput) this.slowInput.value = String(this.model.slowModeS || 0);
    if (document.activeElement !== this.filterInput) this.filterInput.value = (this.model.wordFilter || []).join(", ");
  }

  // Q&A ----------------------------------------------------------------------------------------
  buildQa() {
    this.qaList = el("ol", {class: "room-qa-list mod-qa-list"});
    this.qaEmpty = el("p", {class: "hint room-empty"}, this.t("room.qa.empty"));
    this.qaError = el("p", {class: "room-error", role: "alert"});
    return card(this.t("room.tab.qa"), "mod-qa", this.qaError, this.qaEmpty, this.qaList);
  }

  renderQa() {
    const t = this.t;
    const questions = this.model.sortedQuestions({withHidden: true});
    syncList(this.qaList, questions, (q) => q.question_id, (q) => {
      const buttons = ["answered", "highlighted", "hidden", "open"].map((status) =>
        el("button", {type: "button", class: `mod-mark mod-mark-${status}`, dataset: {status},
                      onclick: () => this.act("qa.mark", {question_id: q.question_id, status}, this.qaError)},
           t(`room.mod.mark.${status}`)));
      return el("li", {class: "room-question", dataset: {questionId: q.question_id}},
                el("p", {class: "room-q-text"}, q.text),
                el("p", {class: "room-q-meta"}, el("span", {class: "room-q-author"}), " · ",
                   el("span", {class: "room-upvotes-label"}), " ", el("span", {class: "room-badge room-q-status"})),
                el("span", {class: "mod-actions"}, buttons));
    }, (node, q) => {
      node.querySelector(".room-q-author").textContent = q.author ? q.author
        : q.source === "registration" ? t("room.qa.from_registration") : t("room.qa.anonymous_author");
      node.querySelector(".room-upvotes-label").textContent = t("room.mod.upvotes", {count: q.upvotes});
      node.dataset.upvotes = q.upvotes;
      node.dataset.status = q.status;
      node.querySelector(".room-q-status").textContent = t(`room.mod.status.${q.status}`);
      node.classList.toggle("is-hidden", q.status === "hidden");
      node.classList.toggle("is-highlighted", q.status === "highlighted");
      for (const button of node.querySelectorAll(".mod-mark")) button.disabled = button.dataset.status === q.status;
    });
    this.qaEmpty.hidden = questions.length > 0;
  }

  // Polls --------------------------------------------------------------------------------------
  buildPolls() {
    const t = this.t;
    this.pollQuestion = el("input", {name: "question", maxlength: 300, required: true, class: "mod-poll-question"});
    this.pollOptions = el("ol", {class: "mod-poll-options"});
    this.pollMultiple = el("input", {type: "checkbox", name: "multiple"});
    this.pollResults = el("select", {name: "results"},
                          el("option", {value: "everyone"}, t("room.mod.poll.results_everyone")),
                          el("option", {value: "moderators"}, t("room.mod.poll.results_moderators")));
    this.addOption = el("button", {type: "button", class: "link"}, t("room.mod.poll.add_option"));
    this.addOption.addEventListener("click", () => {
      const input = this.addPollOption();
      input?.focus();
    });
    this.pollError = el("p", {class: "room-error", role: "alert"});
    const form = el("form", {class: "mod-poll-form"},
                    el("label", {}, t("room.mod.poll.question"), this.pollQuestion),
                    el("fieldset", {}, el("legend", {}, t("room.mod.poll.options")), this.pollOptions, this.addOption),
                    el("label", {class: "inline"}, this.pollMultiple, t("room.mod.poll.multiple")),
                    el("label", {}, t("room.mod.poll.results"), this.pollResults),
                    el("div", {class: "room-inline"}, el("button", {type: "submit", class: "mod-poll-create"}, t("room.mod.poll.create"))),
                    this.pollError);
    for (let i = 0; i < POLL_OPTIONS_MIN; i += 1) this.addPollOption();
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.createPoll();
    });
    this.pollList = el("ol", {class: "room-poll-list mod-poll-list"});
    this.pollEmpty = el("p", {class: "hint room-empty"}, t("room.poll.empty"));
    return card(t("room.tab.polls"), "mod-polls", el("details", {class: "mod-poll-builder", open: true},
                                                      el("summary", {}, t("room.mod.poll.new")), form),
                this.pollEmpty, this.pollList);
  }

  addPollOption() {
    const count = this.pollOptions.children.length;
    if (count >= POLL_OPTIONS_MAX) return null;
    const input = el("input", {name: "option", maxlength: 100, class: "mod-poll-option"});
    const remove = el("button", {type: "button", class: "link mod-remove-option"}, this.t("room.mod.poll.remove_option"));
    const item = el("li", {}, el("label", {}, el("span", {class: "mod-option-label"}), el("span", {class: "room-inline"}, input, remove)));
    remove.addEventListener("click", () => {
      if (this.pollOptions.children.length <= POLL_OPTIONS_MIN) return;
      item.remove();
      this.renumberOptions();
    });
    this.pollOptions.append(item);
    this.renumberOptions();
    return input;
  }

  renumberOptions() {
    const items = [...this.pollOptions.children];
    items.forEach((item, index) => {
      item.querySelector(".mod-option-label").textContent = this.t("room.mod.poll.option", {n: index + 1});
      item.querySelector(".mod-remove-option").hidden = items.length <= POLL_OPTIONS_MIN;
    });
    this.addOption.hidden = items.length >= POLL_OPTIONS_MAX;
  }

  async createPoll() {
    const t = this.t;
    this.pollError.textContent = "";
    const question = this.pollQuestion.value.trim();
    const options = [...this.pollOptions.querySelectorAll("input")].map((i) => i.value.trim()).filter(Boolean);
    if (!question) {
      this.pollError.textContent = t("room.mod.poll.need_question");
      return;
    }
    if (options.length < POLL_OPTIONS_MIN) {
      this.pollError.textContent = t("room.mod.poll.need_options", {min: POLL_OPTIONS_MIN});
      return;
    }
    const ok = await this.act("poll.create", {question, options, multiple: this.pollMultiple.checked,
                                              results: this.pollResults.value}, this.pollError);
    if (ok) {
      this.pollQuestion.value = "";
      this.pollMultiple.checked = false;
      this.pollOptions.replaceChildren();
      for (let i = 0; i < POLL_OPTIONS_MIN; i += 1) this.addPollOption();
    }
  }

  renderPolls() {
    const t = this.t;
    const order = {open: 0, draft: 1, closed: 2};
    const polls = [...this.model.polls].sort((a, b) => (order[a.state] ?? 3) - (order[b.state] ?? 3) || b.poll_id - a.poll_id);
    syncList(this.pollList, polls, (p) => p.poll_id, (p) => {
      const open = el("button", {type: "button", class: "mod-poll-open",
                                 onclick: () => this.act("poll.open", {poll_id: p.poll_id}, this.pollError)}, t("room.mod.poll.open"));
      const close = el("button", {type: "button", class: "mod-poll-close",
                                  onclick: () => this.act("poll.close", {poll_id: p.poll_id}, this.pollError)}, t("room.mod.poll.close"));
      return el("li", {class: "room-poll", dataset: {pollId: p.poll_id}},
                el("h3", {class: "room-poll-question"}, p.question, " ", el("span", {class: "room-badge room-poll-state"})),
                el("ul", {class: "mod-poll-options-shown"}, p.options.map((o) => el("li", {}, o))),
                el("p", {class: "hint mod-poll-kind"}),
                el("p", {class: "actions"}, open, close),
                el("div", {class: "room-results", hidden: true}));
    }, (node, p) => {
      node.dataset.state = p.state;
      node.querySelector(".room-poll-state").textContent = t(`room.mod.poll.state.${p.state}`);
      node.querySelector(".mod-poll-kind").textContent = [
        t(p.multiple ? "room.poll.several" : "room.poll.one"),
        t(p.results === "everyone" ? "room.mod.poll.results_everyone" : "room.mod.poll.results_moderators")].join(" · ");
      node.querySelector(".mod-poll-open").hidden = p.state === "open";
      node.querySelector(".mod-poll-close").hidden = p.state !== "open";
      node.querySelector(".mod-poll-options-shown").hidden = Boolean(p.tally);
      renderResults(node.querySelector(".room-results"), p, t);
    });
    this.pollEmpty.hidden = polls.length > 0;
  }

  // Calls-to-action ----------------------------------------------------------------------------
  buildCtas() {
    this.ctaList = el("ul", {class: "mod-cta-list"});
    this.ctaEmpty = el("p", {class: "hint room-empty"}, this.t("room.mod.cta.empty"));
    this.ctaError = el("p", {class: "room-error", role: "alert"});
    return card(this.t("room.mod.ctas"), "mod-ctas", this.ctaError, this.ctaEmpty, this.ctaList);
  }

  renderCtas() {
    const t = this.t;
    syncList(this.ctaList, this.model.ctas, (c) => c.cta_id, (c) => {
      const push = el("button", {type: "button", class: "mod-cta-push",
                                 onclick: () => this.act("cta.push", {cta_id: c.cta_id}, this.ctaError)}, t("room.mod.cta.push"));
      const withdraw = el("button", {type: "button", class: "mod-cta-withdraw",
                                     onclick: () => this.act("cta.withdraw", {cta_id: c.cta_id}, this.ctaError)},
                          t("room.mod.cta.withdraw"));
      return el("li", {class: "mod-cta", dataset: {ctaId: c.cta_id}},
                el("strong", {class: "mod-cta-label"}, c.label), " ", el("span", {class: "room-badge mod-cta-state"}),
                el("span", {class: "hint mod-cta-url"}, c.url || ""),
                el("span", {class: "actions"}, push, withdraw));
    }, (node, c) => {
      node.dataset.state = c.state || "ready";
      node.querySelector(".mod-cta-state").textContent = t(`room.mod.cta.state.${c.state || "ready"}`);
      node.querySelector(".mod-cta-push").hidden = c.state === "pushed";
      node.querySelector(".mod-cta-withdraw").hidden = c.state !== "pushed";
    });
    this.ctaEmpty.hidden = this.model.ctas.length > 0;
  }

  // Help, submissions, ratings -----------------------------------------------------------------
  buildHelp() {
    this.helpList = el("ol", {class: "mod-help-list", "aria-live": "polite"});
    this.helpEmpty = el("p", {class: "hint room-empty"}, this.t("room.mod.help.empty"));
    return card(this.t("room.mod.help"), "mod-help", this.helpEmpty, this.helpList);
  }

  buildSubmissions() {
    this.submissionList = el("ol", {class: "mod-submission-list", "aria-live": "polite"});
    this.submissionEmpty = el("p", {class: "hint room-empty"}, this.t("room.mod.submissions.empty"));
    return card(this.t("room.mod.submissions"), "mod-submissions", this.submissionEmpty, this.submissionList);
  }

  buildRatings() {
    this.ratingAverage = el("p", {class: "mod-rating-average"});
    this.ratingList = el("ol", {class: "room-rating-list mod-rating-list"});
    this.ratingEmpty = el("p", {class: "hint room-empty"}, this.t("room.rate.empty"));
    this.ratingError = el("p", {class: "room-error", role: "alert"});
    return card(this.t("room.mod.ratings"), "mod-ratings", this.ratingAverage, this.ratingError, this.ratingEmpty,
                this.ratingList);
  }

  renderModeration() {
    const t = this.t;
    syncList(this.helpList, this.model.unanswered, (h) => h.request_id, () => el("li", {class: "mod-help-item"}), (node, h) => {
      setChildren(node, el("p", {class: "room-help-question"}, h.question),
                  el("p", {class: "hint"}, h.participant?.name || "", " · ", clock(h.at, this.lang)));
    });
    this.helpEmpty.hidden = this.model.unanswered.length > 0;
    const labels = new Map(this.model.ctas.map((c) => [c.cta_id, c.label]));
    syncList(this.submissionList, this.model.submissions, (s) => `${s.cta_id}:${s.participant?.id}:${s.at}`,
             () => el("li", {class: "mod-submission"}), (node, s) => {
               setChildren(node, el("span", {class: "room-author"}, s.participant?.name || ""), " → ",
                           el("span", {}, labels.get(s.cta_id) || `#${s.cta_id}`), " ",
                           el("time", {class: "room-time", datetime: s.at || ""}, clock(s.at, this.lang)));
             });
    this.submissionEmpty.hidden = this.model.submissions.length > 0;
  }

  renderRatings() {
    const t = this.t;
    syncList(this.ratingList, this.model.ratings, (r) => r.rating_id, (r) => {
      const remove = el("button", {type: "button", class: "mod-rating-remove danger",
                                   "aria-label": t("room.mod.remove_rating_of", {name: r.author || ""}),
                                   onclick: () => this.act("rating.remove", {rating_id: r.rating_id}, this.ratingError)},
                        t("room.mod.remove"));
      return el("li", {class: "room-rating", dataset: {ratingId: r.rating_id}}, el("span", {class: "mod-rating-body"}), remove);
    }, (node, r) => {
      setChildren(node.querySelector(".mod-rating-body"), starsShown(r.stars, t), " ",
                  el("span", {class: "room-author"}, r.author || ""),
                  r.comment ? el("p", {class: "room-text"}, r.comment) : null);
    });
    const ratings = this.model.ratings;
    this.ratingEmpty.hidden = ratings.length > 0;
    this.ratingAverage.textContent = ratings.length
      ? t("room.mod.rating_average", {average: (ratings.reduce((s, r) => s + r.stars, 0) / ratings.length).toFixed(1),
                                      count: ratings.length})
      : "";
  }

  // Wiring -------------------------------------------------------------------------------------
  wire() {
    const c = this.client;
    wireRoomView(this);
    c.on("event", (event) => {
      const parts = this.model.apply(event, c.role);
      if (parts.includes("ctas")) parts.push("moderation");
      renderParts(this, parts);
    });
    c.on("notice:presence.node", (data) => {
      this.nodes.set(data.node, {count: Number(data.count) || 0, everyS: Number(data.every_s) || 5, at: Date.now()});
      this.tick();
    });
    c.on("notice:live.health", (data) => {
      this.health = data;
      this.healthAt = Date.now();
      this.renderHealth();
    });
    c.on("notice:live.limit_warning", (data) => {
      this.limitWarning = Number(data.seconds_left) || 0;
      this.renderLive();
    });
    c.on("notice", (notice) => {
      if (notice.kind === "live.ended" || notice.kind === "live.started") this.limitWarning = null;
      if (this.model.applyNotice(notice.kind) || notice.kind === "live.ended") {
        this.renderLive();
        c.touch();
      }
    });
    c.on("refused", () => this.renderConnection("refused"));
    c.start();
  }

  renderConnection(status) {
    showConnection(this, status, this.t("room.mod.refused"));
  }

  renderAll() {
    renderParts(this, PARTS);
    this.renderLive();
  }

  /** Send a moderator command; shows the refusal in `errorNode`; resolves true when acknowledged. */
  async act(type, fields, errorNode) {
    errorNode.textContent = "";
    try {
      await this.client.send(type, fields);
      return true;
    } catch (error) {
      errorNode.textContent = errorText(this.t, error);
      return false;
    }
  }
}

function duration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h}:${String(m).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/** Start the control panel in `element` (the page's #moderate-app). */
export function mountModeration(element, {webinarId, lang = "fr", texts = null} = {}) {
  const t = translator(texts || readTexts());
  element.setAttribute("lang", lang);
  return new ModeratorPanel(element, {webinarId, t, lang});
}

const root = document.getElementById("moderate-app");
if (root) {
  const config = JSON.parse(document.getElementById("room-config")?.textContent || "{}");
  mountModeration(root, {webinarId: config.webinarId, lang: config.lang});
}
