// The room as a page knows it: the welcome snapshot (rooms/snapshot.py) plus every event after
// it (rooms/commands.py gives each kind's `data`). Pure data, no DOM: the viewer panel and the
// moderator panel both render from it. `apply(event)` returns the names of the parts that
// changed ("chat", "qa", "polls", "ctas", "ratings", "help", "settings", "moderation").

/** Every part name `apply` can return, in the order a whole page is drawn. */
export const PARTS = Object.freeze(["chat", "qa", "polls", "ctas", "ratings", "help", "moderation", "settings"]);
export const CHAT_KEEP = 200;
export const RATINGS_KEEP = 200;
const SESSION_KEEP = 200;

export class RoomModel {
  constructor() {
    this.webinar = {state: null, title: ""};
    this.live = null; // from notices: "live", "interrupted", "ended" (null: see webinar.state)
    this.slowModeS = 0;
    this.wordFilter = [];
    this.chat = [];
    this.questions = [];
    this.myUpvotes = [];
    this.polls = [];
    this.ctas = [];
    this.ratings = [];
    // Not in snapshots: what this page saw (kept across reloads with the model).
    this.help = [];
    this.unanswered = [];
    this.submissions = [];
    this.impressions = [];
    this.muted = {}; // moderators: participant id -> {name, until (ms epoch)}
    this.banned = {}; // moderators: participant id -> name
    this.myMuteUntil = 0;
  }

  /** The welcome's snapshot replaces everything it covers; the session-only parts stay. */
  loadState(state) {
    this.webinar = {state: state.webinar?.state ?? null, title: state.webinar?.title ?? ""};
    this.live = null;
    this.slowModeS = state.slow_mode_s || 0;
    this.wordFilter = state.word_filter || [];
    this.chat = (state.chat || []).slice(-CHAT_KEEP);
    this.questions = state.questions || [];
    this.myUpvotes = state.my_upvotes || [];
    this.polls = (state.polls || []).map((p) => ({...p, tally: p.tally || null, my_choices: p.my_choices ?? null}));
    this.ctas = state.ctas || [];
    this.ratings = state.ratings || [];
  }

  toJSON() {
    return {...this};
  }

  static fromJSON(data) {
    const model = new RoomModel();
    if (data && typeof data === "object") {
      for (const key of Object.keys(model)) {
        if (key in data) model[key] = data[key];
      }
    }
    return model;
  }

  question(id) {
    return this.questions.find((q) => q.question_id === id);
  }

  poll(id) {
    return this.polls.find((p) => p.poll_id === id);
  }

  cta(id) {
    return this.ctas.find((c) => c.cta_id === id);
  }

  /** Questions to show, most upvoted first (then oldest first); hidden ones only when asked. */
  sortedQuestions({withHidden = false} = {}) {
    return this.questions
      .filter((q) => withHidden || q.status !== "hidden")
      .sort((a, b) => b.upvotes - a.upvotes || a.question_id - b.question_id);
  }

  /** Apply one event; `role` tells which copy of a per-person event this is. */
  apply(event, role) {
    const d = event.data || {};
    switch (event.kind) {
      case "chat.message":
        if (this.chat.some((m) => m.message_id === event.id)) return [];
        this.chat.push({message_id: event.id, text: d.text, at: event.at, author: d.author});
        if (this.chat.length > CHAT_KEEP) this.chat.splice(0, this.chat.length - CHAT_KEEP);
        return ["chat"];
      case "chat.deleted":
        this.chat = this.chat.filter((m) => m.message_id !== d.message_id);
        return ["chat"];
      case "participant.muted":
        if (role === "moderator") {
          if (d.minutes > 0) this.muted[d.participant_id] = {name: d.name, until: Date.now() + d.minutes * 60000};
          else delete this.muted[d.participant_id];
          return ["moderation", "chat"];
        }
        this.myMuteUntil = d.minutes > 0 ? Date.now() + d.minutes * 60000 : 0;
        return ["settings"];
      case "participant.banned":
        if (role === "moderator") this.banned[d.participant_id] = d.name;
        return ["moderation", "chat"];
      case "room.settings":
        if ("slow_mode_s" in d) this.slowModeS = d.slow_mode_s;
        return ["settings"];
      case "room.filter":
        this.wordFilter = d.words || [];
        return ["settings"];
      case "qa.question": {
        const existing = this.question(d.question_id);
        if (existing) Object.assign(existing, d);
        else this.questions.push({...d});
        return ["qa"];
      }
      case "qa.upvoted": {
        const q = this.question(d.question_id);
        if (q) q.upvotes = d.upvotes;
        return ["qa"];
      }
      case "qa.status": {
        const q = this.question(d.question_id);
        if (q) q.status = d.status;
        return ["qa"];
      }
      case "poll.created":
      case "poll.opened": {
        const existing = this.poll(d.poll_id);
        if (existing) Object.assign(existing, d);
        else this.polls.push({...d, tally: null, my_choices: null});
        return ["polls"];
      }
      case "poll.closed": {
        const p = this.poll(d.poll_id);
        if (p) p.state = "closed";
        return ["polls"];
      }
      case "poll.results": {
        const p = this.poll(d.poll_id);
        if (p) p.tally = {poll_id: d.poll_id, counts: d.counts, voters: d.voters};
        return ["polls"];
      }
      case "cta.pushed": {
        const existing = this.cta(d.cta_id);
        if (existing) Object.assign(existing, d, {state: "pushed"});
        else this.ctas.push({...d, state: "pushed"});
        return ["ctas"];
      }
      case "cta.withdrawn": {
        const c = this.cta(d.cta_id);
        if (c) c.state = "withdrawn";
        return ["ctas"];
      }
      case "cta.submitted":
        this.submissions.unshift({cta_id: d.cta_id, participant: d.participant, at: event.at});
        this.submissions.length = Math.min(this.submissions.length, SESSION_KEEP);
        return ["moderation"];
      case "rating.posted":
        this.ratings = this.ratings.filter((r) => r.rating_id !== d.rating_id);
        this.ratings.unshift({rating_id: d.rating_id, stars: d.stars, comment: d.comment, author: d.author});
        this.ratings.length = Math.min(this.ratings.length, RATINGS_KEEP);
        return ["ratings"];
      case "rating.removed":
        this.ratings = this.ratings.filter((r) => r.rating_id !== d.rating_id);
        return ["ratings"];
      case "help.answer":
      case "help.forwarded": {
        const entry = {request_id: d.request_id, question: d.question,
                       answer: event.kind === "help.answer" ? d.answer : null,
                       forwarded: event.kind === "help.forwarded"};
        this.help = this.help.filter((h) => h.request_id !== d.request_id);
        this.help.push(entry);
        if (this.help.length > SESSION_KEEP) this.help.shift();
        return ["help"];
      }
      case "help.unanswered":
        this.unanswered.unshift({request_id: d.request_id, question: d.question, participant: d.participant,
                                 at: event.at});
        this.unanswered.length = Math.min(this.unanswered.length, SESSION_KEEP);
        return ["moderation"];
      default:
        return [];
    }
  }

  /** Live state from a notice kind (live.started, live.interrupted, ...); true when it changed. */
  applyNotice(kind) {
    const next = {"live.started": "live", "live.resumed": "live", "live.interrupted": "interrupted",
                  "live.ended": "ended"}[kind];
    if (!next || next === this.live) return false;
    this.live = next;
    return true;
  }

  /** "live", "interrupted", "ended", "waiting" or "replay": what a banner should say. */
  liveState() {
    if (this.live) return this.live;
    const state = this.webinar.state;
    if (state === "live") return "live";
    if (state === "ended") return "ended";
    if (state === "replay") return "replay";
    return "waiting";
  }
}
