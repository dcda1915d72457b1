// Small DOM helpers for the room pages. Text is always inserted as text nodes (never as HTML):
// names, messages and questions come from participants.

/**
 * `el("li", {class: "x", dataset: {id: 3}, onclick: fn}, "text", child)`: an element whose string
 * children become text nodes. Attributes: `class`, `dataset`, `on<event>` listeners, booleans
 * (set when true), everything else with setAttribute.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `node` with `children` (strings as text). */
export function setChildren(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

/**
 * Make `container`'s children match `items` in order, keyed: existing elements are updated in
 * place (focus, typed text and selections survive), new ones created, stale ones removed, and
 * elements only moved when the order changed.
 */
export function syncList(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const child of [...container.children]) existing.set(child.dataset.key, child);
  const wanted = [];
  for (const item of items) {
    const key = String(keyOf(item));
    let node = existing.get(key);
    if (node) existing.delete(key);
    else {
      node = create(item);
      node.dataset.key = key;
    }
    update(node, item);
    wanted.push(node);
  }
  for (const stale of existing.values()) stale.remove();
  wanted.forEach((node, index) => {
    const at = container.children[index];
    if (at !== node) container.insertBefore(node, at || null);
  });
}

/** Run `update` (which changes `list`'s children), then keep `list` scrolled to its end if it was
 * there before (within 40 px): a log the reader follows, unless they scrolled up to read. */
export function keepAtEnd(list, update) {
  const atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  update();
  if (atEnd) list.scrollTop = list.scrollHeight;
}

/** A unique id for label/aria wiring. */
let counter = 0;
export function uid(prefix = "room") {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** Only http(s) addresses become links or images; anything else (javascript:, data:) is dropped. */
export function safeUrl(value) {
  if (!value) return null;
  try {
    const url = new URL(value, window.location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** "14:05" in the page's language. */
export function clock(iso, lang) {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString(lang || undefined, {hour: "2-digit", minute: "2-digit"});
}

/**
 * Accessible tabs: `tabs` is [{id, label, panel}], the panels are shown one at a time; arrow
 * keys, Home and End move between tabs (WAI-ARIA tabs pattern, automatic activation).
 */
export function tabList(label, tabs, onSelect) {
  const list = el("div", {class: "room-tabs", role: "tablist", "aria-label": label});
  const buttons = tabs.map((tab, index) => {
    const button = el("button", {type: "button", role: "tab", id: `${tab.panel.id}-tab`, "aria-controls": tab.panel.id,
                                 "aria-selected": index === 0 ? "true" : "false", tabindex: index === 0 ? "0" : "-1",
                                 dataset: {tab: tab.id}},
                      el("span", {class: "room-tab-label"}, tab.label), el("span", {class: "room-tab-badge", hidden: true}));
    tab.panel.setAttribute("role", "tabpanel");
    tab.panel.setAttribute("aria-labelledby", button.id);
    tab.panel.hidden = index !== 0;
    button.addEventListener("click", () => select(index, false));
    list.append(button);
    return button;
  });
  function select(index, focus) {
    buttons.forEach((button, i) => {
      const on = i === index;
      button.setAttribute("aria-selected", on ? "true" : "false");
      button.tabIndex = on ? 0 : -1;
      tabs[i].panel.hidden = !on;
      if (on) button.querySelector(".room-tab-badge").hidden = true;
    });
    if (focus) buttons[index].focus();
    if (onSelect) onSelect(tabs[index].id);
  }
  list.addEventListener("keydown", (event) => {
    const current = buttons.indexOf(document.activeElement);
    if (current < 0) return;
    const moves = {ArrowRight: current + 1, ArrowLeft: current - 1, Home: 0, End: buttons.length - 1};
    if (!(event.key in moves)) return;
    event.preventDefault();
    select((moves[event.key] + buttons.length) % buttons.length, true);
  });
  return {
    element: list,
    select: (id) => select(tabs.findIndex((t) => t.id === id), false),
    selected: () => tabs[buttons.findIndex((b) => b.getAttribute("aria-selected") === "true")].id,
    /** Mark a tab that is not shown as having something new. */
    flag(id, text) {
      const index = tabs.findIndex((t) => t.id === id);
      if (index < 0 || buttons[index].getAttribute("aria-selected") === "true") return;
      const badge = buttons[index].querySelector(".room-tab-badge");
      badge.textContent = text;
      badge.hidden = false;
    },
  };
}
