// The speaker page (/w/{id}/speak): camera and microphone choice with a preview, the pre-flight
// check (R-ROOM-4: upload and download timed against our server), then the webcam room over
// WebRTC: backstage, on stage, leave. Signaling goes over the room WebSocket (rooms/messages.py:
// rtc.offer answered in its ack; stage.* commands); the server sends back the program (H.264,
// the same packets for every speaker) and a mix of everyone but us.
// Shared content: upload (PDF, images, MP4; raw body with progress, the server's refusal shown),
// the items with their page thumbnails, and the content.* / clip.* commands; what is shown comes
// from the snapshot (state.content), the commands' acks and content.changed events.
// Names from the server are inserted as text, never as HTML.

import {RoomClient, readTexts, translator} from "./room-client.js";
import {el, setChildren, syncList} from "./dom.js";
import {followMaintenance} from "./panel.js";

const ICE_GATHER_MAX_MS = 3000;
const CAMERA = {width: {ideal: 640}, height: {ideal: 360}, frameRate: {ideal: 30, max: 30}};

const config = JSON.parse(document.getElementById("speak-config").textContent);
const t = translator(readTexts());
const $ = (id) => document.getElementById(id);

const state = {
  status: "setup", // setup, connecting, backstage, on_stage, left
  preflight: null, // {upload_mbps, download_mbps, verdict: ok|warn|refused}
  stage: null,
  backstage: [],
  error: null,
  stream: null,
  pc: null,
  client: null,
  me: null,
  content: null, // what the program shows: {item_id, kind, name, page, pages, clip} (content_commands.state_view)
  items: [], // uploaded items (GET /webinars/{id}/content)
  upload: null, // {name, loaded, total} while a file is being sent
  screen: null, // the shared screen's MediaStreamTrack while sharing
  screenSender: null, // the RTCRtpSender of the screen's video section (no track until shared)
};
const ERROR_KEYS = {maintenance: "maintenance.notice"}; // refusal codes the page words itself
window.webinarSpeak = state; // for tests and debugging

function showError(message) {
  state.error = message || null;
  $("speak-error").textContent = message || "";
}

function setStatus(status) {
  state.status = status;
  const text = {connecting: t("speak.connecting"), backstage: t("speak.connected"),
                on_stage: t("speak.on_stage_you"), left: t("speak.left")}[status] || "";
  $("speak-status").textContent = text;
  const connected = status === "backstage" || status === "on_stage";
  $("speak-join").disabled = connected || status === "connecting" || !state.stream;
  $("speak-on-stage").disabled = status !== "backstage";
  $("speak-off-stage").disabled = status !== "on_stage";
  $("speak-leave").disabled = !connected;
  $("speak-screen").disabled = !connected || !navigator.mediaDevices?.getDisplayMedia;
  $("speak-screen").textContent = t(state.screen ? "speak.screen_stop" : "speak.screen_share");
  renderContent();
}

// Devices -----------------------------------------------------------------------------------
async function openDevices() {
  const camera = $("speak-camera").value;
  const microphone = $("speak-microphone").value;
  const constraints = {
    video: camera ? {...CAMERA, deviceId: {exact: camera}} : CAMERA,
    audio: microphone ? {deviceId: {exact: microphone}} : true,
  };
  try {
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
    state.stream = stream;
    $("speak-preview").srcObject = stream;
    $("speak-devices-error").textContent = "";
    await listDevices();
    await replaceTracks();
  } catch (error) {
    $("speak-devices-error").textContent = `${t("speak.error.camera")} (${error.name})`;
  }
  setStatus(state.status);
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const fill = (select, kind, current) => {
    const options = devices.filter((d) => d.kind === kind)
      .map((d, i) => el("option", {value: d.deviceId, selected: d.deviceId === current}, d.label || `${kind} ${i + 1}`));
    setChildren(select, ...options);
  };
  const tracks = state.stream ? state.stream.getTracks() : [];
  const using = (kind) => (tracks.find((tr) => tr.kind === kind)?.getSettings().deviceId) || "";
  fill($("speak-camera"), "videoinput", using("video"));
  fill($("speak-microphone"), "audioinput", using("audio"));
}

async function replaceTracks() {
  if (!state.pc || !state.stream) return;
  for (const sender of state.pc.getSenders()) {
    const track = state.stream.getTracks().find((tr) => sender.track && tr.kind === sender.track.kind);
    if (track) await sender.replaceTrack(track);
  }
}

// Pre-flight (R-ROOM-4) ---------------------------------------------------------------------
async function preflight() {
  const button = $("speak-check");
  const result = $("speak-check-result");
  button.disabled = true;
  result.textContent = t("speak.check_running");
  const url = `/w/${encodeURIComponent(config.webinarId)}/speak/preflight`;
  try {
    const body = new Uint8Array(config.preflightBytes);
    for (let offset = 0; offset < body.length; offset += 65536) {
      crypto.getRandomValues(body.subarray(offset, Math.min(offset + 65536, body.length)));
    }
    let started = performance.now();
    const up = await fetch(url, {method: "POST", body, credentials: "same-origin",
                                 headers: {"x-csrf-token": config.csrfToken, "content-type": "application/octet-stream"}});
    const upSeconds = (performance.now() - started) / 1000;
    const upBody = await up.json();
    if (!up.ok) throw new Error(upBody.message || up.status);
    // The lower of our timing and the server's: what the link really carries.
    const uploadMbps = Math.min(upBody.upload_mbps, (upBody.bytes * 8) / upSeconds / 1e6);
    started = performance.now();
    const down = await fetch(`${url}?bytes=${config.preflightBytes}`, {credentials: "same-origin", cache: "no-store"});
    const got = (await down.arrayBuffer()).byteLength;
    const downloadMbps = (got * 8) / ((performance.now() - started) / 1000) / 1e6;
    const verdict = uploadMbps < config.minUploadMbps ? "refused" : uploadMbps < config.warnUploadMbps ? "warn" : "ok";
    state.preflight = {upload_mbps: uploadMbps, download_mbps: downloadMbps, verdict};
    const figures = t("speak.check_result", {up: uploadMbps.toFixed(1), down: downloadMbps.toFixed(1)});
    result.textContent = verdict === "refused" ? `${figures} ${t("speak.check_refused", {min: config.minUploadMbps})}`
      : verdict === "warn" ? `${figures} ${t("speak.check_warn", {min: config.warnUploadMbps})}` : figures;
    result.dataset.verdict = verdict;
  } catch (error) {
    state.preflight = {verdict: "failed"};
    result.textContent = `${t("speak.check_failed")} (${error.message || error})`;
  } finally {
    button.disabled = false;
    setStatus(state.status);
  }
}

// The room ------------------------------------------------------------------------------------
function waitIceGathering(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", done); resolve(); } };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ICE_GATHER_MAX_MS);
  });
}

function preferH264(transceiver) {
  if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver?.getCapabilities) return;
  const codecs = RTCRtpReceiver.getCapabilities("video").codecs;
  const h264 = codecs.filter((c) => c.mimeType === "video/H264" && /packetization-mode=1/.test(c.sdpFmtpLine || ""));
  const rtx = codecs.filter((c) => c.mimeType === "video/rtx");
  if (h264.length) transceiver.setCodecPreferences([...h264, ...rtx]);
}

async function connectPeer() {
  const pc = new RTCPeerConnection({iceServers: config.iceServers || []});
  state.pc = pc;
  const video = state.stream.getVideoTracks()[0];
  const audio = state.stream.getAudioTracks()[0];
  preferH264(pc.addTransceiver(video || "video", {direction: "sendrecv", streams: [state.stream]}));
  pc.addTransceiver(audio || "audio", {direction: "sendrecv", streams: [state.stream]});
  // The screen share's section, empty until shared: replaceTrack then needs no renegotiation.
  state.screenSender = pc.addTransceiver("video", {direction: "sendonly"}).sender;
  if (state.screen) state.screenSender.replaceTrack(state.screen).catch(() => {});
  const remote = new MediaStream();
  pc.addEventListener("track", (event) => {
    remote.addTrack(event.track);
    if (event.track.kind === "video") $("speak-program").srcObject = new MediaStream([event.track]);
    else $("speak-mix").srcObject = new MediaStream([event.track]);
  });
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "failed" && state.pc === pc) showError(t("speak.left"));
  });
  await pc.setLocalDescription(await pc.createOffer());
  await waitIceGathering(pc);
  const ack = await state.client.send("rtc.offer", {sdp: pc.localDescription.sdp}, {timeoutMs: 20000});
  await pc.setRemoteDescription(ack.answer);
  applyStage(ack.stage);
  state.backstage = ack.backstage || [];
  renderLists();
}

async function join() {
  showError("");
  setStatus("connecting");
  if (!state.client) {
    const client = new RoomClient({webinarId: config.webinarId, scope: "speak", socket: "speak"});
    state.client = client;
    followMaintenance(client, t);  // the page's maintenance banner follows the switch live
    client.on("welcome", ({participant}) => {
      state.me = participant;
      if (!state.pc) connectPeer().catch(fail);
    });
    client.on("stage.state", (event) => applyStage(event.data));
    client.on("stage.backstage", (event) => { state.backstage = event.data.backstage || []; renderLists(); });
    client.on("welcome", ({state: snapshot}) => { if (snapshot && snapshot.content) applyContent(snapshot.content); });
    client.on("content.changed", (event) => applyContent(event.data));
    let refusal = null; // the server's reason, sent just before its close 4403 (e.g. media_node: rooms/ws.py)
    client.on("error", (error) => { refusal = error; });
    client.on("status", (status) => {
      if (status === "refused") fail(refusal && refusal.code === client.refusedReason ? refusal : new Error(status));
    });
    client.start();
  } else {
    connectPeer().catch(fail);
  }
}

function fail(error) {
  showError(error.message || String(error));
  closePeer();
  setStatus("setup");
}

function closePeer() {
  if (state.pc) state.pc.close();
  state.pc = null;
  state.screenSender = null;
  stopScreen();
}

// Screen share: the program shows it full frame while its pictures come (rooms/webcam/peer.py).
async function shareScreen() {
  if (state.screen) { stopScreen(); return; }
  showError("");
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({video: {frameRate: {ideal: 15, max: 30}}, audio: false});
    const track = stream.getVideoTracks()[0];
    track.addEventListener("ended", () => { if (state.screen === track) stopScreen(); }); // the browser's "stop sharing"
    state.screen = track;
    if (state.screenSender) await state.screenSender.replaceTrack(track);
  } catch (error) {
    if (error.name !== "NotAllowedError") showError(`${t("speak.screen_failed")} (${error.name || error})`);
  }
  setStatus(state.status);
}

function stopScreen() {
  const track = state.screen;
  state.screen = null;
  if (track) track.stop();
  if (state.screenSender) state.screenSender.replaceTrack(null).catch(() => {});
  if ($("speak-screen")) setStatus(state.status);
}

async function command(type, fields = {}) {
  showError("");
  try {
    const ack = await state.client.send(type, fields);
    if (ack.stage) applyStage(ack.stage);
    if (ack.content) applyContent(ack.content);
  } catch (error) {
    showError(ERROR_KEYS[error.code] ? t(ERROR_KEYS[error.code]) : error.message || error.code);
  }
}

async function leave() {
  try { await state.client.send("rtc.hangup"); } catch { /* closing anyway */ }
  closePeer();
  state.stage = null;
  setStatus("left");
}

function applyStage(stage) {
  if (!stage) return;
  state.stage = stage;
  if (state.pc && state.me) {
    const onStage = stage.on_stage.some((p) => p.id === state.me.id);
    setStatus(onStage ? "on_stage" : "backstage");
  }
  if ($("speak-layout")) $("speak-layout").value = stage.layout;
  renderLists();
}

function renderLists() {
  const moderator = config.role === "moderator";
  const stage = state.stage || {on_stage: [], spotlight: null};
  const line = (person, actions) => [person.name, state.me && person.id === state.me.id ? ` (${t("speak.you")})` : "", ...actions];
  if (!stage.on_stage.length) setChildren($("speak-stage-list"), el("li", {class: "hint"}, t("speak.stage_empty")));
  else syncList($("speak-stage-list"), stage.on_stage, (p) => p.id, () => el("li"), (node, person) => {
    const actions = !moderator ? [] : [
      el("button", {type: "button", onclick: () => command("stage.leave", {participant_id: person.id})}, t("speak.take_off")),
      stage.spotlight === person.id
        ? el("button", {type: "button", onclick: () => command("stage.spotlight", {participant_id: null})}, t("speak.unspotlight"))
        : el("button", {type: "button", onclick: () => command("stage.spotlight", {participant_id: person.id})}, t("speak.spotlight")),
    ];
    setChildren(node, ...line(person, actions));
  });
  if (!state.backstage.length) setChildren($("speak-backstage-list"), el("li", {class: "hint"}, t("speak.backstage_empty")));
  else syncList($("speak-backstage-list"), state.backstage, (p) => p.id, () => el("li"), (node, person) => {
    const actions = !moderator ? [] : [
      el("button", {type: "button", onclick: () => command("stage.join", {participant_id: person.id})}, t("speak.bring_on")),
    ];
    setChildren(node, ...line(person, actions));
  });
}

// Shared content ------------------------------------------------------------------------------
const contentUrl = `/webinars/${encodeURIComponent(config.webinarId)}/content`;
const pageUrl = (itemId, index) => `${contentUrl}/${itemId}/pages/${index}`;

async function loadItems() {
  try {
    const response = await fetch(contentUrl, {credentials: "same-origin", cache: "no-store"});
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || response.status);
    state.items = body.items || [];
    if (!state.content && body.state) state.content = body.state;
  } catch (error) {
    contentMessage(`${t("speak.content.list_failed")} (${error.message || error})`, true);
  }
  renderContent();
}

function contentMessage(text, isError = false) {
  $("speak-content-result").textContent = isError ? "" : text;
  $("speak-content-error").textContent = isError ? text : "";
}

/** POST one file as the raw body (XMLHttpRequest: fetch reports no upload progress). */
function sendFile(file, setId) {
  return new Promise((resolve) => {
    // The refusal comes back in the page's language (the server reads ?lang first).
    const query = new URLSearchParams({name: file.name, lang: document.documentElement.lang || ""});
    if (setId !== null) query.set("set", String(setId));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${contentUrl}?${query}`);
    xhr.setRequestHeader("x-csrf-token", config.csrfToken);
    xhr.setRequestHeader("content-type", "application/octet-stream");
    xhr.upload.addEventListener("progress", (event) => {
      state.upload = {name: file.name, loaded: event.loaded, total: event.lengthComputable ? event.total : file.size};
      renderUpload();
    });
    const done = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON: status only */ }
      resolve({ok: xhr.status === 201, status: xhr.status, body});
    };
    xhr.addEventListener("load", done);
    xhr.addEventListener("error", () => resolve({ok: false, status: 0, body: {}}));
    xhr.send(file);
  });
}

async function uploadFiles(files) {
  const input = $("speak-content-file");
  input.disabled = true;
  contentMessage("");
  let setId = null; // several images picked at once become one image set
  try {
    for (const file of files) {
      state.upload = {name: file.name, loaded: 0, total: file.size};
      renderUpload();
      const result = await sendFile(file, /^image\//.test(file.type) ? setId : null);
      if (!result.ok) {
        contentMessage(result.body.message || t("speak.content.upload_failed", {name: file.name, status: result.status}), true);
        break;
      }
      const item = result.body.item;
      if (item.kind === "images" && setId === null) setId = item.id;
      contentMessage(t("speak.content.uploaded", {name: item.name}));
      await loadItems();
    }
  } finally {
    state.upload = null;
    renderUpload();
    input.value = "";
    input.disabled = false;
  }
}

function renderUpload() {
  const bar = $("speak-content-progress");
  if (!state.upload) { bar.hidden = true; return; }
  bar.hidden = false;
  bar.max = Math.max(1, state.upload.total);
  bar.value = state.upload.loaded;
  $("speak-content-result").textContent = t("speak.content.uploading",
    {name: state.upload.name, percent: Math.floor((100 * state.upload.loaded) / Math.max(1, state.upload.total))});
}

let clipEndTimer = null;

function applyContent(content) {
  if (!content) return;
  state.content = content;
  state.contentAt = performance.now();
  clearTimeout(clipEndTimer);
  if (content.clip && content.clip.playing) { // the server sends no event when a clip ends: re-render then
    const left = Math.max(0, content.clip.duration_s - content.clip.position_s);
    clipEndTimer = setTimeout(renderContent, left * 1000 + 50);
  }
  if (content.item_id !== null && !state.items.some((i) => i.id === content.item_id)) loadItems(); // someone else's upload
  renderContent();
}

/** The clip's state now: the event's position advanced by the time since it came (while playing). */
function clipNow(clip) {
  if (!clip) return {position_s: 0, duration_s: 0, playing: false};
  if (!clip.playing) return clip;
  const position = clip.position_s + (performance.now() - (state.contentAt || performance.now())) / 1000;
  return {...clip, position_s: Math.min(position, clip.duration_s), playing: position < clip.duration_s};
}

function renderContent() {
  if (!$("speak-content")) return;
  const connected = state.status === "backstage" || state.status === "on_stage";
  const shown = state.content || {item_id: null};
  const current = $("speak-content-current");
  const preview = $("speak-content-preview");
  if (shown.item_id === null) {
    current.textContent = t("speak.content.none");
  } else if (shown.kind === "clip") {
    const clip = clipNow(shown.clip);
    current.textContent = t(clip.playing ? "speak.content.clip_playing" : "speak.content.clip_paused",
      {name: shown.name, position: Math.round(clip.position_s), duration: Math.round(clip.duration_s)});
  } else {
    current.textContent = t("speak.content.showing", {name: shown.name, page: shown.page + 1, pages: shown.pages});
  }
  const paged = shown.kind === "pdf" || shown.kind === "images";
  if (paged) {
    const src = pageUrl(shown.item_id, shown.page);
    if (preview.getAttribute("src") !== src) preview.setAttribute("src", src);
    preview.hidden = false;
  } else {
    preview.removeAttribute("src");
    preview.hidden = true;
  }
  current.dataset.item = shown.item_id === null ? "" : String(shown.item_id);
  current.dataset.page = String(shown.page || 0);
  $("speak-content-prev").disabled = !connected || !paged || shown.page <= 0;
  $("speak-content-next").disabled = !connected || !paged || shown.page >= shown.pages - 1;
  $("speak-content-clear").disabled = !connected || shown.item_id === null;
  const clip = shown.kind === "clip" ? clipNow(shown.clip) : null;
  $("speak-clip-play").disabled = !connected || !clip || clip.playing;
  $("speak-clip-pause").disabled = !connected || !clip || !clip.playing;
  const list = $("speak-content-list");
  if (!state.items.length) { setChildren(list, el("li", {class: "hint"}, t("speak.content.empty"))); return; }
  syncList(list, state.items, (item) => `${item.id}:${item.pages}`, () => el("li"), (node, item) => {
    const isShown = shown.item_id === item.id;
    node.classList.toggle("shown", isShown);
    const thumbs = item.kind === "clip" ? [] : Array.from({length: item.pages}, (_, index) => el("button", {
      type: "button", class: `speak-thumb${isShown && shown.page === index ? " current" : ""}`, disabled: !connected,
      title: t("speak.content.page", {n: index + 1}), dataset: {index},
      onclick: () => command("content.show", {item_id: item.id, index}),
    }, el("img", {src: pageUrl(item.id, index), alt: t("speak.content.page", {n: index + 1}), loading: "lazy"})));
    const detail = item.kind === "clip" ? t("speak.content.clip_length", {seconds: Math.round(item.clip?.duration_s || 0)})
      : t("speak.content.pages", {count: item.pages});
    setChildren(node,
      el("div", {class: "speak-item-head"}, el("strong", {}, item.name), ` · ${detail} `,
        el("button", {type: "button", class: "speak-show", disabled: !connected,
                      onclick: () => command("content.show", {item_id: item.id, index: 0})}, t("speak.content.show"))),
      thumbs.length ? el("div", {class: "speak-thumbs"}, ...thumbs) : null);
  });
}

$("speak-content-file").addEventListener("change", (event) => {
  const files = [...event.target.files];
  if (files.length) uploadFiles(files);
});
$("speak-content-prev").addEventListener("click", () => command("content.prev"));
$("speak-content-next").addEventListener("click", () => command("content.next"));
$("speak-content-clear").addEventListener("click", () => command("content.clear"));
$("speak-clip-play").addEventListener("click", () => command("clip.play"));
$("speak-clip-pause").addEventListener("click", () => command("clip.pause"));

$("speak-camera").addEventListener("change", openDevices);
$("speak-microphone").addEventListener("change", openDevices);
$("speak-check").addEventListener("click", preflight);
$("speak-join").addEventListener("click", join);
$("speak-on-stage").addEventListener("click", () => {
  if (!state.preflight || state.preflight.verdict === "failed") { showError(t("speak.check_first")); return; }
  command("stage.join");
});
$("speak-off-stage").addEventListener("click", () => command("stage.leave"));
$("speak-leave").addEventListener("click", leave);
$("speak-screen").addEventListener("click", shareScreen);
if ($("speak-layout")) $("speak-layout").addEventListener("change", (e) => command("stage.layout", {layout: e.target.value}));
window.addEventListener("pagehide", () => closePeer());
setStatus("setup");
openDevices();
loadItems();
