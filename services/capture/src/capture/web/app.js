// The page: sign-in, the live view (sources, meters, transcripts, status) and the library.

import { Api, AuthProblem } from "./api.js";
import { AudioCapture, AudioProblem, openDisplayAudio, openMicrophone } from "./audio.js";
import { Library } from "./library.js";
import { LiveSession } from "./live.js";
import { TranscriptView } from "./transcript.js";

const CHUNK_MS = 100;
const STATUS_EVERY_MS = 5000;
const RECOVER_FOR_MS = 120_000;
const COMPARE_AFTER_CLOSE_MS = 60_000;

const $ = (selector) => document.querySelector(selector);
const api = new Api();
const ui = {
  alert: $("[data-testid=alert]"),
  signin: $("[data-signin]"),
  workers: $("[data-testid=worker-status]"),
  live: $("[data-view-panel=live]"),
  engine: $("[data-engine]"),
  compare: $("[data-compare]"),
  second: $("[data-second-source]"),
  start: $("[data-start]"),
  stop: $("[data-stop]"),
  meters: $("[data-meters]"),
  status: $("[data-testid=live-status]"),
  session: $("[data-testid=session-id]"),
  latency: $("[data-testid=latency]"),
  counts: $("[data-testid=counts]"),
  primaryTitle: $("[data-primary-title]"),
  compareColumn: $("[data-compare-column]"),
  compareTitle: $("[data-compare-title]"),
};
const transcript = new TranscriptView($("[data-testid=transcript]"));
const compared = new TranscriptView($("[data-testid=transcript-compare]"));
const library = new Library(api, $("[data-view-panel=library]"), { onProblem: showProblem });

let live = null; // {session, captures, context, started, latencies, counts, compareFeeds}

function showAlert(text, { kind = "error", code = "" } = {}) {
  ui.alert.textContent = text;
  ui.alert.className = kind === "info" ? "alert info" : "alert";
  ui.alert.dataset.code = code;
  ui.alert.hidden = !text;
}

function showProblem(error) {
  if (error instanceof AuthProblem) {
    ui.signin.hidden = !api.authRequired;
    showAlert(error.message, { code: "unauthorized" });
  } else if (error instanceof AudioProblem) {
    showAlert(error.message, { code: error.code });
  } else {
    showAlert(String(error?.message ?? error), { code: "error" });
  }
}

function setState(state, text) {
  ui.live.dataset.state = state;
  ui.status.textContent = text;
  const busy = state === "starting" || state === "live" || state === "reconnecting";
  ui.start.disabled = busy || state === "finishing";
  ui.stop.disabled = !busy;
  ui.engine.disabled = ui.compare.disabled = ui.second.disabled = busy || state === "finishing";
}

// ---- worker status -------------------------------------------------------------------------

async function refreshStatus() {
  try {
    const config = await api.loadConfig();
    const parts = config.engines.map((engine) => {
      const workers = config.workers[engine] ?? 0;
      const lag = config.lag_s[engine] ?? 0;
      const plural = workers === 1 ? "worker" : "workers";
      return `${engine}: ${workers} ${plural}` + (workers && lag > 0.5 ? `, ${lag.toFixed(1)} s behind` : "");
    });
    ui.workers.textContent = parts.join(" · ");
    ui.workers.classList.toggle("bad", config.engines.some((e) => !config.workers[e]));
  } catch {
    ui.workers.textContent = "capture unreachable";
    ui.workers.classList.add("bad");
  }
}

// ---- sign-in ---------------------------------------------------------------------------------

ui.signin.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = new FormData(ui.signin).get("token");
  try {
    await api.signIn(token);
    ui.signin.hidden = true;
    ui.signin.reset();
    showAlert("Signed in.", { kind: "info" });
  } catch (error) {
    showProblem(error);
  }
});

// ---- live ------------------------------------------------------------------------------------

function meter(name) {
  const bar = document.createElement("meter");
  Object.assign(bar, { min: -60, max: 0, low: -40, high: -6, optimum: -20, value: -60 });
  bar.setAttribute("aria-label", `${name} level`);
  const value = document.createElement("span");
  value.textContent = "—";
  const row = document.createElement("div");
  row.className = "meter";
  const label = document.createElement("span");
  label.textContent = name;
  row.append(label, bar, value);
  ui.meters.append(row);
  return (rms) => {
    const dbfs = rms > 0 ? Math.max(-60, 20 * Math.log10(rms)) : -60;
    bar.value = dbfs;
    value.textContent = `${dbfs.toFixed(0)} dB`;
  };
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function onTranscript({ message, offset, sessionId }) {
  transcript.show(message, offset, sessionId);
  if (message.type === "final") {
    live.counts.finals += 1;
    if (live.firstFrameAt !== null) {
      const spokenAt = live.firstFrameAt + (offset + message.end) * 1000;
      live.latencies.push((performance.now() - spokenAt) / 1000);
      const last = live.latencies.at(-1);
      ui.latency.textContent = `${last.toFixed(2)} s / ${median(live.latencies).toFixed(2)} s`;
    }
  } else {
    live.counts.partials += 1;
  }
  ui.counts.textContent = `${live.counts.partials} / ${live.counts.finals}`;
}

async function openSources() {
  const streams = [{ name: "mic", stream: await openMicrophone() }];
  if (ui.second.checked) {
    try {
      streams.push({ name: "tab", stream: await openDisplayAudio() });
    } catch (error) {
      streams[0].stream.getTracks().forEach((track) => track.stop());
      throw error;
    }
  }
  return streams;
}

async function start() {
  showAlert("");
  setState("starting", "Opening the microphone…");
  let streams;
  try {
    await api.token(); // a wrong or missing token stops here, before the microphone opens
    streams = await openSources();
  } catch (error) {
    showProblem(error);
    setState("idle", error instanceof AudioProblem ? "Microphone unavailable." : "Not started.");
    return;
  }
  closeCompare(live); // the last session's feeds, if the aggregator has not completed it yet
  const context = new AudioContext();
  await context.resume();
  const engine = ui.engine.value;
  const session = new LiveSession(api, {
    engine,
    sources: streams.map(({ name }) => ({ name, sample_rate: context.sampleRate })),
  });
  live = {
    session,
    context,
    captures: [],
    firstFrameAt: null,
    latencies: [],
    counts: { partials: 0, finals: 0 },
    compareFeeds: new Map(), // bus session id -> EventSource of the compare engine
  };
  transcript.clear();
  compared.clear();
  ui.meters.replaceChildren();
  ui.latency.textContent = "—";
  ui.counts.textContent = "0 / 0";
  ui.primaryTitle.textContent = `Transcript (${engine})`;
  for (const [index, { name, stream }] of streams.entries()) {
    const level = meter(name);
    const capture = await AudioCapture.start(context, stream, {
      chunkMs: CHUNK_MS,
      onFrame: (pcm) => {
        if (live?.session !== session) return;
        if (live.firstFrameAt === null) live.firstFrameAt = performance.now() - CHUNK_MS;
        session.send(index, pcm);
      },
      onLevel: level,
      onEnded: () => showAlert(`The ${name} source ended.`, { kind: "info" }),
    });
    live.captures.push(capture);
  }
  session.addEventListener("ready", ({ detail }) => {
    ui.session.textContent = detail.sessionId;
    if (detail.resumed) showAlert("Reconnected: the session goes on.", { kind: "info", code: "reconnected" });
    setState("live", `Live — ${streams.map((s) => s.name).join(" + ")} → ${engine}`);
    if (ui.compare.value) followCompare(detail.sessionId, ui.compare.value);
  });
  session.addEventListener("transcript", ({ detail }) => onTranscript(detail));
  session.addEventListener("backpressure", ({ detail }) => {
    const amount = detail.reason === "bus" ? detail.backlog_s : detail.lag_s;
    ui.status.textContent = `Falling behind (${detail.reason}, ${amount} s); nothing is dropped.`;
  });
  session.addEventListener("lost", ({ detail }) => {
    if (detail.lostSession) recoverFinals(live, detail.lostSession);
    setState("reconnecting", `Connection lost; reconnecting in ${(detail.retryInMs / 1000).toFixed(1)} s…`);
    showAlert("Connection lost. Reconnecting; audio is kept until the connection is back.", {
      kind: "info",
      code: "connection_lost",
    });
  });
  session.addEventListener("problem", ({ detail }) => {
    showAlert(detail.message, { code: detail.code });
    if (detail.code === "unauthorized") ui.signin.hidden = !api.authRequired;
  });
  session.addEventListener("done", ({ detail }) => {
    const note = detail.complete ? "" : " (an engine did not finish in time)";
    setState("done", `Finished: ${live.counts.finals} final segment(s)${note}.`);
  });
  session.addEventListener("closed", () => {
    stopCaptures();
    // The compare engine's last finals may still be on their way to the aggregator: its feeds
    // close on session.completed; this only bounds them if that never comes.
    const current = live;
    setTimeout(() => closeCompare(current), COMPARE_AFTER_CLOSE_MS);
    if (ui.live.dataset.state !== "done") setState("idle", "Stopped.");
  });
  await session.connect();
}

function stopCaptures() {
  if (!live) return;
  for (const capture of live.captures) capture.stop();
  live.captures = [];
  if (live.context.state !== "closed") live.context.close();
}

function stop() {
  if (!live) return;
  stopCaptures();
  setState("finishing", "Finishing: waiting for the last finals…");
  live.session.stop();
}

// The finals of a connection that was lost arrive in the library once its audio is transcribed:
// show them in place of the partials the page had, so the reconnected session loses no text.
async function recoverFinals(current, { sessionId, offset }, deadline = Date.now() + RECOVER_FOR_MS) {
  let session;
  try {
    session = await api.json(`/v1/library/sessions/${sessionId}?engine=${encodeURIComponent(current.session.engine)}`);
  } catch {
    session = null;
  }
  if (!session?.complete) {
    if (Date.now() < deadline && live === current) {
      setTimeout(() => recoverFinals(current, { sessionId, offset }, deadline), 1000);
    }
    return;
  }
  if (live !== current) return;
  for (const segment of session.transcript) {
    const known = transcript.lines.get(segment.segment_id)?.dataset.final === "true";
    transcript.show(storedFinal(segment), offset, sessionId);
    if (!known) current.counts.finals += 1;
  }
  transcript.dropPartialsOf(sessionId);
  ui.counts.textContent = `${current.counts.partials} / ${current.counts.finals}`;
}

// The compare column follows the aggregator's feed of the other engine, one feed per bus session
// (a reconnect opens another). A feed is closed once its session is complete (otherwise the
// browser's EventSource would reconnect each time the aggregator ends the stream, until the
// short-lived token expires), when the same session is followed again and when a new live
// session starts. Not on Stop: the compare engine's last finals come after it.
function closeCompare(current, sessionId = null) {
  if (!current) return;
  for (const [id, feed] of current.compareFeeds) {
    if (sessionId !== null && id !== sessionId) continue;
    feed.close();
    current.compareFeeds.delete(id);
  }
}

// A final as the library stores it (SegmentOut), as the live protocol sends it: times on the
// source's own clock.
function storedFinal(segment) {
  const start = segment.source_start_sample / 16000;
  const shift = segment.start_s - start; // session timeline -> the source's own clock
  return {
    type: "final",
    segment_id: segment.segment_id,
    source: segment.source,
    start,
    end: segment.source_end_sample / 16000,
    text: segment.text,
    words: segment.words.map((w) => ({ ...w, start: w.start_s - shift, end: w.end_s - shift })),
  };
}

function followCompare(sessionId, engine, attempt = 0) {
  ui.compareColumn.hidden = false;
  ui.compareTitle.textContent = `Transcript (${engine})`;
  const current = live;
  closeCompare(current, sessionId);
  api
    .withToken(`/v1/library/sessions/${sessionId}/feed?engine=${encodeURIComponent(engine)}`)
    .then((url) => {
      if (live !== current) return;
      closeCompare(current, sessionId);
      const feed = new EventSource(url);
      current.compareFeeds.set(sessionId, feed);
      const done = () => {
        feed.close();
        if (current.compareFeeds.get(sessionId) === feed) current.compareFeeds.delete(sessionId);
      };
      // The finals (and live tail) the aggregator stored before the feed was subscribed.
      feed.addEventListener("snapshot", (event) => {
        const snapshot = JSON.parse(event.data);
        for (const segment of snapshot.transcript) compared.show(storedFinal(segment));
        const offsets = new Map(snapshot.source_details.map((s) => [s.source, s.offset_s]));
        for (const partial of snapshot.live_tail) {
          const shift = offsets.get(partial.source) ?? 0; // back on the source's own clock
          compared.show({
            type: "partial",
            ...partial,
            start: partial.start_s - shift,
            end: partial.end_s - shift,
          });
        }
        if (snapshot.complete) done(); // the aggregator ends a complete session's feed here
      });
      feed.addEventListener("update", (event) => {
        const update = JSON.parse(event.data);
        if (update.kind === "session.completed" || update.kind === "session.deleted") {
          done();
          return;
        }
        if (!update.kind.startsWith("transcript.")) return;
        compared.show({
          type: update.kind === "transcript.final" ? "final" : "partial",
          segment_id: update.segment_id,
          source: update.source,
          start: update.start_sample / 16000,
          end: update.end_sample / 16000,
          text: update.text,
          revision: update.revision,
        });
      });
      feed.onerror = () => {
        // The aggregator may not have stored the new session yet: try again shortly.
        if (feed.readyState === EventSource.CLOSED && attempt < 5 && live === current) {
          setTimeout(() => followCompare(sessionId, engine, attempt + 1), 1000);
        }
      };
    })
    .catch(showProblem);
}

ui.start.addEventListener("click", () => start().catch(showProblem));
ui.stop.addEventListener("click", stop);

// ---- views -----------------------------------------------------------------------------------

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".tab")) {
      other.setAttribute("aria-pressed", String(other === tab));
    }
    for (const panel of document.querySelectorAll("[data-view-panel]")) {
      panel.hidden = panel.dataset.viewPanel !== tab.dataset.view;
    }
    if (tab.dataset.view === "library") library.refresh();
  });
}

async function boot() {
  setState("idle", "Ready.");
  try {
    const config = await api.loadConfig();
    for (const engine of config.engines) {
      ui.engine.append(new Option(engine, engine));
      ui.compare.append(new Option(engine, engine));
    }
    if (api.authRequired) {
      ui.signin.hidden = false;
      if (api.longToken) {
        await api.signIn(api.longToken).then(
          () => (ui.signin.hidden = true),
          (error) => showProblem(error),
        );
      }
    }
  } catch (error) {
    showProblem(error);
  }
  await refreshStatus();
  setInterval(refreshStatus, STATUS_EVERY_MS);
  document.body.dataset.ready = "true";
}

boot();
