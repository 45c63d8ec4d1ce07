// One live session over the native protocol (/v1/stream). Audio frames are queued until the
// server is ready; if the connection drops, the queue keeps filling and a new connection (its
// `metadata.resumes` naming the previous bus session) carries on where the last one stopped.

const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
const MAX_QUEUED_S = 60;

export class LiveSession extends EventTarget {
  constructor(api, { engine, sources }) {
    super();
    this.api = api;
    this.engine = engine;
    this.sources = sources; // [{name, sample_rate}]
    this.queue = []; // [index, ArrayBuffer] not yet sent
    this.queuedSeconds = 0;
    this.socket = null;
    this.ready = false;
    this.stopping = false;
    this.closed = false;
    this.attempt = 0;
    this.sessionIds = [];
    this.offset = 0; // seconds of audio sent on earlier connections
    this.sentSeconds = 0; // on this connection, per the first source
  }

  get sessionId() {
    return this.sessionIds.at(-1) ?? null;
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  async connect() {
    const url = await this.api.websocketUrl("/v1/stream");
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.ready = false;
    socket.onopen = () => {
      const metadata = { client: "browser-page" };
      if (this.sessionId) metadata.resumes = this.sessionId;
      socket.send(
        JSON.stringify({
          type: "start",
          engine: this.engine,
          partials: true,
          encoding: "pcm_s16le",
          channels: 1,
          sources: this.sources.map(({ name, sample_rate }) => ({ name, sample_rate })),
          metadata,
        }),
      );
    };
    socket.onmessage = (event) => this.receive(JSON.parse(event.data));
    socket.onclose = (event) => this.closedWith(socket, event);
  }

  receive(message) {
    switch (message.type) {
      case "ready":
        this.ready = true;
        this.attempt = 0;
        this.sessionIds.push(message.session_id);
        this.emit("ready", { sessionId: message.session_id, resumed: this.sessionIds.length > 1 });
        this.flush();
        break;
      case "partial":
      case "final":
        this.emit("transcript", { message, offset: this.offset, sessionId: this.sessionId });
        break;
      case "backpressure":
        this.emit("backpressure", message);
        break;
      case "error":
        this.emit("problem", { code: message.code, message: message.message, fatal: message.fatal });
        break;
      case "done":
        this.emit("done", message);
        break;
      default:
        break;
    }
  }

  // `index` is the source's position in `sources`; `pcm` an ArrayBuffer of PCM16.
  send(index, pcm) {
    if (this.closed) return;
    const seconds = pcm.byteLength / 2 / this.sources[index].sample_rate;
    if (this.ready && this.socket?.readyState === WebSocket.OPEN) {
      this.transmit(index, pcm, seconds);
      return;
    }
    this.queue.push([index, pcm, seconds]);
    if (index === 0) this.queuedSeconds += seconds;
    while (this.queuedSeconds > MAX_QUEUED_S && this.queue.length > 0) {
      const [dropped, , droppedSeconds] = this.queue.shift();
      if (dropped === 0) this.queuedSeconds -= droppedSeconds;
    }
  }

  transmit(index, pcm, seconds) {
    const frame = new Uint8Array(pcm.byteLength + 1);
    frame[0] = index;
    frame.set(new Uint8Array(pcm), 1);
    this.socket.send(frame);
    if (index === 0) this.sentSeconds += seconds;
  }

  flush() {
    for (const [index, pcm, seconds] of this.queue) this.transmit(index, pcm, seconds);
    this.queue = [];
    this.queuedSeconds = 0;
  }

  closedWith(socket, event) {
    if (socket !== this.socket) return;
    const wasReady = this.ready;
    this.ready = false;
    if (this.stopping || this.closed) {
      this.closed = true;
      this.emit("closed", { code: event.code });
      return;
    }
    if (event.code === 1008) {
      this.closed = true;
      this.emit("problem", {
        code: "unauthorized",
        message: "The server refused this token. Sign in again with the right token.",
        fatal: true,
      });
      this.emit("closed", { code: event.code });
      return;
    }
    const lostSession = wasReady ? { sessionId: this.sessionId, offset: this.offset } : null;
    if (wasReady) {
      this.offset += this.sentSeconds;
      this.sentSeconds = 0;
    }
    const delay = RECONNECT_DELAYS_MS[Math.min(this.attempt, RECONNECT_DELAYS_MS.length - 1)];
    this.attempt += 1;
    this.emit("lost", { code: event.code, retryInMs: delay, attempt: this.attempt, lostSession });
    setTimeout(() => {
      if (!this.closed && !this.stopping) this.connect().catch((error) => this.failed(error));
    }, delay);
  }

  failed(error) {
    this.closed = true;
    this.emit("problem", { code: "connect", message: String(error.message ?? error), fatal: true });
    this.emit("closed", { code: 0 });
  }

  // No more audio: the server sends the last finals, then `done`, then closes.
  stop() {
    this.stopping = true;
    if (this.ready && this.socket?.readyState === WebSocket.OPEN) {
      this.flush();
      this.socket.send(JSON.stringify({ type: "end" }));
    } else {
      this.closed = true;
      this.socket?.close();
      this.emit("closed", { code: 1000 });
    }
  }

  // Drop the connection on purpose (used to show that a reconnect keeps the session going).
  interrupt() {
    this.socket?.close(4000, "interrupted by the page");
  }
}
