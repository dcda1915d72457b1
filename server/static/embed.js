// The registration form of a webinar, embedded in any site (R-REG-1). Paste:
//   <script src="https://WEBINAR-SERVER/static/embed.js" data-webinar="WEBINAR_ID"></script>
// Optional attributes: data-lang="fr|en" (default: the visitor's browser language),
// data-title (the frame's accessible name).
// It inserts an <iframe> after the script tag, sizes its height to the form (messages
// "webinar:resize" from our server's origin only) and, after a registration, dispatches
// a DOM CustomEvent "webinar:registered" (detail: {webinarId}) that bubbles from the
// iframe to document and window. No personal data ever reaches the host page.
(function () {
  "use strict";
  var MAX_HEIGHT = 10000; // CSS pixels; a larger request is capped
  var script = document.currentScript;
  if (!script) {
    var candidates = document.querySelectorAll("script[data-webinar]:not([data-webinar-embedded])");
    script = candidates.length ? candidates[candidates.length - 1] : null;
  }
  if (!script || script.hasAttribute("data-webinar-embedded")) { return; }
  script.setAttribute("data-webinar-embedded", "");
  var webinarId = script.getAttribute("data-webinar") || "";
  if (!/^[0-9a-fA-F-]{36}$/.test(webinarId)) {
    if (window.console) { console.warn("embed.js: data-webinar must be a webinar id"); }
    return;
  }
  var origin = new URL(script.src, document.baseURI).origin;
  var src = origin + "/w/" + webinarId + "/embed";
  var lang = script.getAttribute("data-lang");
  if (lang === "fr" || lang === "en") { src += "?lang=" + lang; }

  var frame = document.createElement("iframe");
  frame.src = src;
  frame.title = script.getAttribute("data-title") || "Registration / Inscription";
  frame.setAttribute("data-webinar-frame", webinarId);
  frame.style.cssText = "display:block;width:100%;border:0;overflow:hidden;min-height:8rem";
  script.parentNode.insertBefore(frame, script.nextSibling);

  window.addEventListener("message", function (event) {
    if (event.origin !== origin || event.source !== frame.contentWindow) { return; }
    var data = event.data;
    if (!data || typeof data !== "object") { return; }
    if (data.type === "webinar:resize" && typeof data.height === "number" && isFinite(data.height)) {
      var height = Math.max(0, Math.min(MAX_HEIGHT, Math.ceil(data.height)));
      frame.style.height = height + "px";
    } else if (data.type === "webinar:registered" && data.webinarId === webinarId) {
      frame.dispatchEvent(new CustomEvent("webinar:registered", {
        bubbles: true, composed: true, detail: { webinarId: webinarId }
      }));
    }
  });
})();
