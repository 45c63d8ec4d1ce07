// The session library: list and search stored sessions, open one (its merged timeline of sources
// and engines, with word times), download it, delete it. An open session that is still live
// follows the aggregator's feed and updates in place.

import { clock } from "./transcript.js";

const FORMATS = ["txt", "json", "srt", "vtt"];
const PAGE_SIZE = 50;
const ALL_ENGINES = "*"; // the engine choice that interleaves every engine's finals

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key.includes("-")) node.setAttribute(key, value);
    else if (value !== undefined && value !== null) node[key] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function when(unixSeconds) {
  if (!unixSeconds) return "—";
  return new Date(unixSeconds * 1000).toLocaleString();
}

export class Library {
  constructor(api, root, { onProblem }) {
    this.api = api;
    this.root = root;
    this.onProblem = onProblem;
    this.list = root.querySelector("[data-library-list]");
    this.detail = root.querySelector("[data-library-detail]");
    this.count = root.querySelector("[data-library-count]");
    this.more = root.querySelector("[data-library-more]");
    this.nextOffset = null; // of the list's next page, null when it is all shown
    this.more.addEventListener("click", () => this.refresh({ more: true }));
    this.query = "";
    this.known = new Map(); // session id -> summary, of every list page loaded
    this.feed = null;
    this.openId = null;
    this.openEngine = null;
    this.reloadTimer = null;
    root.querySelector("[data-library-search]").addEventListener("submit", (event) => {
      event.preventDefault();
      this.query = new FormData(event.target).get("q").trim();
      this.refresh();
    });
  }

  // The first page of the list (or search), or with `more` the next one, added below.
  async refresh({ more = false } = {}) {
    if (more && this.nextOffset === null) return;
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (this.query) params.set("q", this.query);
    if (more) params.set("offset", String(this.nextOffset));
    try {
      const page = await this.api.json(`/v1/library/sessions?${params}`);
      this.renderList(page, { append: more });
    } catch (error) {
      this.onProblem(error);
    }
  }

  renderList(page, { append = false } = {}) {
    for (const item of page.items) this.known.set(item.session_id, item);
    this.count.textContent = this.query
      ? `${page.total} session(s) match “${this.query}”`
      : `${page.total} session(s)`;
    // A page fetched after sessions were added can repeat the last rows of the one before it.
    const items = append
      ? page.items.filter((item) => !this.list.querySelector(`tr[data-session="${item.session_id}"]`))
      : page.items;
    const rows = items.map((item) =>
      element(
        "tr",
        { dataset: { session: item.session_id } },
        element(
          "td",
          {},
          element("button", {
            type: "button",
            className: "link",
            textContent: when(item.started_at),
            title: item.session_id,
            onclick: () => this.open(item.session_id),
          }),
        ),
        element("td", { textContent: clock(item.duration_s) }),
        element("td", { textContent: item.sources.join(", ") }),
        element("td", { textContent: item.engines.join(", ") }),
        element("td", { textContent: String(item.word_count) }),
        element("td", {
          textContent: item.complete ? "complete" : item.status === "open" ? "live" : "finishing",
          className: item.status === "open" ? "badge live" : "badge",
        }),
      ),
    );
    if (append) this.list.append(...rows);
    else this.list.replaceChildren(...rows);
    this.nextOffset = page.next_offset ?? null;
    this.more.hidden = this.nextOffset === null;
  }

  async open(sessionId, engine = null) {
    this.closeFeed();
    this.openId = sessionId;
    this.openEngine = engine;
    try {
      const session = await this.load(sessionId, engine);
      await this.renderDetail(session);
      if (!session.complete) this.follow(session);
    } catch (error) {
      this.onProblem(error);
    }
  }

  // One engine's view of the session (null: its primary engine), or with ALL_ENGINES the primary
  // view whose timeline interleaves every engine's finals by start time, each with its engine.
  async load(sessionId, engine) {
    const view = (name) =>
      this.api.json(
        `/v1/library/sessions/${sessionId}` + (name ? `?engine=${encodeURIComponent(name)}` : ""),
      );
    if (engine !== ALL_ENGINES) return view(engine);
    const primary = await view(null);
    const others = await Promise.all(
      primary.engines.filter((name) => name !== primary.engine).map(view),
    );
    const transcript = [primary, ...others]
      .flatMap((one) => one.transcript)
      .sort((a, b) => a.start_s - b.start_s || a.engine.localeCompare(b.engine));
    return { ...primary, transcript, shown: ALL_ENGINES };
  }

  async renderDetail(session) {
    const base = `/v1/library/sessions/${session.session_id}`;
    const engineQuery = `?engine=${encodeURIComponent(session.engine)}`;
    const downloads = await Promise.all(
      FORMATS.map(async (format) => {
        const path = `${base}/export.${format}${engineQuery}`;
        const link = element("a", {
          href: await this.api.withToken(path),
          download: `${session.session_id}.${format}`,
          textContent: format.toUpperCase(),
          className: "button",
        });
        link.addEventListener("pointerdown", async () => {
          link.href = await this.api.withToken(path);
        });
        return link;
      }),
    );
    const engines = element(
      "select",
      {
        "aria-label": "Engine shown",
        onchange: (event) => this.open(session.session_id, event.target.value),
      },
      ...session.engines.map((name) =>
        element("option", {
          value: name,
          textContent: name,
          selected: name === (session.shown ?? session.engine),
        }),
      ),
      session.engines.length > 1
        ? element("option", {
            value: ALL_ENGINES,
            textContent: "all engines",
            selected: session.shown === ALL_ENGINES,
          })
        : null,
    );
    const remove = element("button", {
      type: "button",
      className: "danger",
      textContent: "Delete",
      onclick: () => this.remove(session.session_id, remove),
    });
    const status = session.complete ? "complete" : session.status === "open" ? "live" : "finishing";
    const players = await Promise.all(
      session.sources.map(async (source) =>
        element(
          "figure",
          { className: "player" },
          element("figcaption", { textContent: source }),
          element("audio", {
            controls: true,
            preload: "none",
            src: await this.api.withToken(`${base}/audio/${encodeURIComponent(source)}.wav`),
            "aria-label": `${source} audio`,
            onerror: (event) => {
              event.target.replaceWith(
                element("span", {
                  className: "muted",
                  textContent: "audio no longer retained",
                }),
              );
            },
          }),
        ),
      ),
    );
    const timeline = element("ol", { className: "timeline", "data-testid": "timeline" });
    for (const segment of session.transcript) timeline.append(segmentLine(segment));
    for (const partial of session.live_tail) timeline.append(tailLine(partial));
    this.detail.replaceChildren(
      element("h3", { textContent: `Session ${session.session_id}` }),
      ...[this.continuity(session)].filter(Boolean),
      element(
        "p",
        { className: "meta" },
        `${when(session.started_at)} · ${clock(session.duration_s)} · ${session.word_count} words · `,
        element("span", { className: "badge", textContent: status, dataset: { status } }),
        session.language ? ` · ${session.language}` : "",
        ` · sources: ${session.sources.join(", ")}`,
      ),
      element(
        "div",
        { className: "actions" },
        element("label", {}, "Engine ", engines),
        element("span", { className: "downloads" }, "Download ", ...downloads),
        remove,
      ),
      element("div", { className: "players" }, ...players),
      timeline,
    );
    this.detail.hidden = false;
  }

  // A reconnected live session is a new session whose metadata.resumes names the lost one; the
  // two stay separate entries (the aggregator does not merge them), linked both ways here. The
  // later one is found among the sessions the list has loaded.
  continuity(session) {
    const links = [];
    const link = (label, sessionId) =>
      element(
        "span",
        { dataset: { continuity: label } },
        `${label} `,
        element("button", {
          type: "button",
          className: "link",
          textContent: sessionId,
          onclick: () => this.open(sessionId),
        }),
      );
    const resumes = session.metadata?.resumes;
    if (resumes) links.push(link("continues", resumes));
    for (const other of this.known.values()) {
      if (other.metadata?.resumes === session.session_id) {
        links.push(link("continued by", other.session_id));
      }
    }
    if (links.length === 0) return null;
    const joined = links.flatMap((node, index) => (index > 0 ? [" · ", node] : [node]));
    return element("p", { className: "meta continuity" }, "Reconnected: ", ...joined);
  }

  follow(session) {
    this.api
      .withToken(`/v1/library/sessions/${session.session_id}/feed?engine=${session.engine}`)
      .then((url) => {
        if (this.openId !== session.session_id) return;
        const feed = new EventSource(url);
        this.feed = feed;
        feed.addEventListener("update", (event) => {
          const update = JSON.parse(event.data);
          if (update.kind === "transcript.partial") this.showTail(update);
          else this.reloadSoon(session.session_id, this.openEngine ?? session.engine);
        });
        feed.onerror = () => {
          if (feed.readyState === EventSource.CLOSED) this.closeFeed();
        };
      })
      .catch((error) => this.onProblem(error));
  }

  showTail(update) {
    const timeline = this.detail.querySelector(".timeline");
    if (!timeline) return;
    let line = timeline.querySelector(`[data-tail="${update.source}"]`);
    if (!line) {
      line = element("li", { className: "partial", dataset: { tail: update.source } });
      timeline.append(line);
    }
    line.dataset.source = update.source;
    line.textContent = update.text;
  }

  reloadSoon(sessionId, engine) {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(async () => {
      if (this.openId !== sessionId) return;
      try {
        const session = await this.load(sessionId, engine);
        if (this.openId === sessionId) await this.renderDetail(session);
        if (session.complete) this.closeFeed();
      } catch (error) {
        this.onProblem(error);
      }
    }, 300);
  }

  async remove(sessionId, button) {
    if (button.dataset.armed !== "true") {
      button.dataset.armed = "true";
      button.textContent = "Confirm delete";
      setTimeout(() => {
        button.dataset.armed = "false";
        button.textContent = "Delete";
      }, 5000);
      return;
    }
    try {
      await this.api.request(`/v1/library/sessions/${sessionId}`, { method: "DELETE" });
      this.closeFeed();
      this.openId = null;
      this.detail.replaceChildren();
      this.detail.hidden = true;
      await this.refresh();
    } catch (error) {
      this.onProblem(error);
    }
  }

  closeFeed() {
    this.feed?.close();
    this.feed = null;
  }
}

function segmentLine(segment) {
  const words = segment.words.length
    ? segment.words.flatMap((word, index) => {
        const span = element("span", {
          className: "word",
          textContent: word.text.trim(),
          title: `${clock(word.start_s)}–${clock(word.end_s)}`,
        });
        return index > 0 ? [" ", span] : [span];
      })
    : [segment.text];
  return element(
    "li",
    {
      className: "final",
      dataset: {
        source: segment.source,
        engine: segment.engine,
        start: String(segment.start_s),
        time: `${clock(segment.start_s)}–${clock(segment.end_s)}`,
      },
    },
    ...words,
  );
}

function tailLine(partial) {
  return element("li", {
    className: "partial",
    textContent: partial.text,
    dataset: { tail: partial.source, source: partial.source },
  });
}
