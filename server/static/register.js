// Registration pages (server/templates/register*.html), no build step, no module needed.
// 1. Shows each <time data-local datetime="...Z"> in the visitor's own time zone and
//    language (the server wrote it in Europe/Paris for browsers without script).
// 2. Puts the visitor's IANA time zone into the form's hidden time_zone field.
// 3. In the iframe (<body data-embed>): tells the host page our height
//    ({type: "webinar:resize", height} in CSS pixels) whenever it changes, and after a
//    registration ({type: "webinar:registered", webinarId}). Target origin "*": we do
//    not know the host's origin, and these messages carry nothing private.
(function () {
  "use strict";
  var lang = document.documentElement.lang || undefined;
  var format = null;
  try {
    format = new Intl.DateTimeFormat(lang, {
      weekday: "long", year: "numeric", month: "long", day: "numeric",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    });
  } catch (e) { format = null; }
  Array.prototype.forEach.call(document.querySelectorAll("time[data-local]"), function (el) {
    var when = new Date(el.getAttribute("datetime"));
    if (format && !isNaN(when.getTime())) {
      el.title = el.textContent;
      el.textContent = format.format(when);
    }
  });
  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
  Array.prototype.forEach.call(document.querySelectorAll('input[name="time_zone"]'), function (el) {
    if (zone) { el.value = zone; }
  });

  var body = document.body;
  if (!body.hasAttribute("data-embed") || window.parent === window) { return; }
  var root = document.getElementById("embed-root") || body;
  var lastHeight = -1;
  function reportHeight() {
    var height = Math.ceil(root.getBoundingClientRect().height);
    if (height !== lastHeight) {
      lastHeight = height;
      window.parent.postMessage({ type: "webinar:resize", height: height }, "*");
    }
  }
  if (window.ResizeObserver) { new ResizeObserver(reportHeight).observe(root); }
  window.addEventListener("load", reportHeight);
  reportHeight();
  var registered = body.getAttribute("data-registered");
  if (registered) {
    window.parent.postMessage({ type: "webinar:registered", webinarId: registered }, "*");
  }
})();
