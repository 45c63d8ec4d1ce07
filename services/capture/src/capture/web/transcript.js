// A live transcript: one line per segment, a partial revised in place until its final replaces it.
// The source label and time are drawn from data attributes by CSS, so a line's text is its words.

export function clock(seconds) {
  const total = Math.max(0, seconds);
  const minutes = Math.floor(total / 60);
  const rest = (total - minutes * 60).toFixed(1).padStart(4, "0");
  return `${String(minutes).padStart(2, "0")}:${rest}`;
}

export class TranscriptView {
  constructor(element) {
    this.element = element;
    this.lines = new Map(); // segment_id -> element
  }

  clear() {
    this.element.replaceChildren();
    this.lines.clear();
  }

  // `offset` (seconds) places a reconnected session after the audio sent before it.
  show(message, offset = 0, sessionId = "") {
    const id = message.segment_id;
    let line = this.lines.get(id);
    if (line?.dataset.final === "true") return; // a final is immutable
    const text = (message.text ?? "").trim();
    if (!line) {
      if (!text) return;
      line = document.createElement("p");
      line.className = "line";
      this.lines.set(id, line);
      this.insert(line, offset + message.start);
    }
    if (sessionId) line.dataset.session = sessionId;
    line.dataset.source = message.source;
    line.dataset.start = String(offset + message.start);
    line.dataset.time = clock(offset + message.start);
    if (message.type === "final") {
      line.dataset.final = "true";
      line.classList.remove("partial");
      line.classList.add("final");
      line.replaceChildren(...words(message.words ?? [], text, offset));
      if (!text) line.remove();
    } else {
      line.classList.add("partial");
      line.dataset.revision = String(message.revision ?? 0);
      line.textContent = text;
    }
    this.element.scrollTop = this.element.scrollHeight;
  }

  insert(line, start) {
    const after = [...this.element.children].find((child) => Number(child.dataset.start) > start);
    this.element.insertBefore(line, after ?? null);
  }

  // Partials of a session that will send no more (its connection was lost) and got no final.
  dropPartialsOf(sessionId) {
    for (const line of this.element.querySelectorAll(".partial")) {
      if (line.dataset.session === sessionId && line.dataset.final !== "true") {
        this.lines.delete([...this.lines].find(([, node]) => node === line)?.[0]);
        line.remove();
      }
    }
  }

  text() {
    return [...this.element.querySelectorAll('[data-final="true"]')]
      .map((line) => line.textContent)
      .join(" ");
  }
}

function words(list, text, offset) {
  if (list.length === 0) return [document.createTextNode(text)];
  const nodes = [];
  list.forEach((word, index) => {
    const span = document.createElement("span");
    span.className = "word";
    span.textContent = word.text.trim();
    const probability = word.probability == null ? "" : `, p ${word.probability.toFixed(2)}`;
    span.title = `${clock(offset + word.start)}–${clock(offset + word.end)}${probability}`;
    if (index > 0) nodes.push(document.createTextNode(" "));
    nodes.push(span);
  });
  return nodes;
}
