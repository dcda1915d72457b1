// Starts the interaction panel on a page that includes rooms/templates/_room_panel.html:
// reads the page's `<script type="application/json" id="room-config">` and mounts the panel
// into the element it names (default: #interaction).

import {mountInteraction} from "./panel.js";

const config = JSON.parse(document.getElementById("room-config")?.textContent || "{}");
const target = document.getElementById(config.target || "interaction");
if (target && config.webinarId) {
  mountInteraction(target, {webinarId: config.webinarId, csrfToken: config.csrfToken || "", lang: config.lang || "fr",
                            staff: Boolean(config.staff)});
}
