// pipewright's dashboard: confirmation of forms that ask for it, and a run's live log
// (Server-Sent Events from /api/v1/runs/ID/logs?follow=true) with ANSI colours, foldable
// `::group::` sections, steps and a list of annotations. Every piece of a log line is added
// as text (textContent), never as markup; colours become class names or an rgb() computed
// from numbers.
"use strict";

document.addEventListener("submit", (e) => {
  const question = e.target.dataset && e.target.dataset.confirm;
  if (question && !window.confirm(question)) e.preventDefault();
});

// --- ANSI SGR colours -------------------------------------------------------------------

const SGR = /\x1b\[([0-9;]*)m/g;

// The xterm 256-colour palette above the 16 named colours.
function xterm(n) {
  if (n < 232) {
    const v = [0, 95, 135, 175, 215, 255];
    n -= 16;
    return `rgb(${v[Math.floor(n / 36)]},${v[Math.floor(n / 6) % 6]},${v[n % 6]})`;
  }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

// Applies one SGR parameter list to `st` ({fg, bg, bold, dim, italic, underline}); a colour
// is a class number 0..15 or an "rgb(...)" string built from numbers only.
function sgr(st, params) {
  const p = params === "" ? [0] : params.split(";").map((x) => parseInt(x || "0", 10));
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === 0) Object.assign(st, { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false });
    else if (c === 1) st.bold = true;
    else if (c === 2) st.dim = true;
    else if (c === 3) st.italic = true;
    else if (c === 4) st.underline = true;
    else if (c === 22) st.bold = st.dim = false;
    else if (c === 23) st.italic = false;
    else if (c === 24) st.underline = false;
    else if (c >= 30 && c <= 37) st.fg = c - 30;
    else if (c >= 90 && c <= 97) st.fg = c - 90 + 8;
    else if (c === 39) st.fg = null;
    else if (c >= 40 && c <= 47) st.bg = c - 40;
    else if (c >= 100 && c <= 107) st.bg = c - 100 + 8;
    else if (c === 49) st.bg = null;
    else if ((c === 38 || c === 48) && p[i + 1] === 5 && p[i + 2] >= 0 && p[i + 2] <= 255) {
      const n = p[i + 2];
      st[c === 38 ? "fg" : "bg"] = n < 16 ? n : xterm(n);
      i += 2;
    } else if ((c === 38 || c === 48) && p[i + 1] === 2 && i + 4 < p.length) {
      const [r, g, b] = p.slice(i + 2, i + 5).map((v) => Math.max(0, Math.min(255, v | 0)));
      st[c === 38 ? "fg" : "bg"] = `rgb(${r},${g},${b})`;
      i += 4;
    }
  }
}

// Appends `text` to `into` as spans styled by its SGR sequences, which are not shown.
function ansi(text, into) {
  const st = { fg: null, bg: null, bold: false, dim: false, italic: false, underline: false };
  let last = 0;
  const put = (chunk) => {
    if (!chunk) return;
    const styled = st.fg !== null || st.bg !== null || st.bold || st.dim || st.italic || st.underline;
    if (!styled) {
      into.appendChild(document.createTextNode(chunk));
      return;
    }
    const span = document.createElement("span");
    const cls = [];
    if (typeof st.fg === "number") cls.push(`f${st.fg}`);
    else if (st.fg) span.style.color = st.fg;
    if (typeof st.bg === "number") cls.push(`b${st.bg}`);
    else if (st.bg) span.style.backgroundColor = st.bg;
    if (st.bold) cls.push("bold");
    if (st.dim) cls.push("dim");
    if (st.italic) cls.push("italic");
    if (st.underline) cls.push("underline");
    span.className = cls.join(" ");
    span.textContent = chunk;
    into.appendChild(span);
  };
  for (const m of text.matchAll(SGR)) {
    put(text.slice(last, m.index));
    sgr(st, m[1]);
    last = m.index + m[0].length;
  }
  put(text.slice(last));
}

// --- The log: one section per job, steps, groups, annotations ---------------------------

// Lines of each job a finished run's page shows at first.
const TAIL = 2000;

// `[job] text`, as the log stream sends each line.
const PREFIX = /^\[([^\]]*)\] ?([\s\S]*)$/;
// `##[error] app.py:3: message`, as a runner stores an annotation: the place is a file and
// line, or a file alone that looks like a path (so `Error: text` stays a message).
const ANNOTATION = /^##\[(error|warning|notice|debug)\](?: (\S+?):(\d+):| (\S*[./]\S*?):)? ([\s\S]*)$/;

function logView(log, annotations) {
  const jobs = new Map();
  const job = (name) => {
    let j = jobs.get(name);
    if (j) return j;
    const section = document.createElement("details");
    section.className = "job";
    section.open = true;
    const summary = document.createElement("summary");
    summary.textContent = name;
    const body = document.createElement("div");
    body.className = "lines";
    section.append(summary, body);
    log.appendChild(section);
    j = { body, target: body, number: 0 };
    jobs.set(name, j);
    return j;
  };
  const line = (j, className) => {
    const div = document.createElement("div");
    div.className = className ? `line ${className}` : "line";
    j.number += 1;
    div.dataset.n = j.number;
    j.target.appendChild(div);
    return div;
  };
  return (raw) => {
    const m = PREFIX.exec(raw);
    const [name, text] = m ? [m[1], m[2]] : ["", raw];
    const j = job(name);
    if (text.startsWith("##[step] ")) {
      j.target = j.body;
      line(j, "step").textContent = text.slice(9);
      return;
    }
    if (text.startsWith("##[step-end] ")) {
      j.target = j.body;
      line(j, "step-end").textContent = text.slice(13);
      return;
    }
    if (text.startsWith("##[group]")) {
      const group = document.createElement("details");
      group.className = "group";
      const summary = document.createElement("summary");
      ansi(text.slice(9), summary);
      group.appendChild(summary);
      j.target.appendChild(group);
      j.target = group;
      return;
    }
    if (text === "##[endgroup]") {
      j.target = j.body;
      return;
    }
    const a = ANNOTATION.exec(text);
    if (a) {
      const [, level, fileAndLine, lineNo, fileAlone, message] = a;
      const file = fileAndLine || fileAlone;
      const div = line(j, `annotation ${level}`);
      const place = file ? `${file}${lineNo ? `:${lineNo}` : ""}: ` : "";
      div.textContent = `${level}: ${place}${message}`;
      if (level !== "debug") {
        const li = document.createElement("li");
        li.className = level;
        const where = document.createElement("span");
        where.className = "where";
        where.textContent = `${name}${file ? ` · ${file}${lineNo ? `:${lineNo}` : ""}` : ""}`;
        const what = document.createElement("span");
        what.textContent = ` ${level}: ${message}`;
        li.append(where, what);
        annotations.appendChild(li);
        annotations.hidden = false;
      }
      return;
    }
    ansi(text, line(j));
  };
}

document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  if (!log) return;
  const annotations = document.getElementById("annotations");
  const run = log.dataset.run;
  const done = log.dataset.done === "true";
  let add = logView(log, annotations);
  // Lines are added in batches, once a frame: reading the log's scroll position once per
  // batch, not once per line, keeps a log of any size from forcing a layout per line.
  let pending = [];
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    const lines = pending;
    pending = [];
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    for (const line of lines) add(line);
    if (atEnd) log.scrollTop = log.scrollHeight;
  };
  const queue = (line) => {
    pending.push(line);
    if (scheduled) return;
    scheduled = true;
    // A hidden page gets no frames: the timer catches up.
    const timer = window.setTimeout(flush, 250);
    window.requestAnimationFrame(() => {
      window.clearTimeout(timer);
      if (scheduled) flush();
    });
  };
  // A run shows the last lines of each job at once, whatever the size of its log (a running
  // one then streams the new ones, live); the whole log comes on request.
  let source = null;
  const skippedNote = (skipped) => {
    const note = document.createElement("p");
    note.className = "skipped";
    note.textContent = `${skipped.toLocaleString()} earlier lines are not shown. `;
    const all = document.createElement("button");
    all.type = "button";
    all.textContent = "Show the whole log";
    all.addEventListener("click", () => {
      note.remove();
      if (source) source.close();
      pending = [];
      log.replaceChildren();
      annotations.replaceChildren();
      annotations.hidden = true;
      add = logView(log, annotations);
      follow(false);
    });
    note.appendChild(all);
    log.before(note);
  };
  const follow = (tail) => {
    const url = `/api/v1/runs/${run}/logs?follow=true` + (tail ? `&tail=${TAIL}` : "");
    source = new EventSource(url);
    source.addEventListener("skipped", (e) => skippedNote(Number(e.data)));
    source.addEventListener("line", (e) => queue(e.data));
    source.addEventListener("done", () => {
      source.close();
      // The statuses changed while it ran: show them.
      if (!done) window.setTimeout(() => window.location.reload(), 300);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) queue("[] (the log stream ended)");
    };
  };
  if (!done) {
    follow(true);
    return;
  }
  fetch(`/api/v1/runs/${run}/logs?tail=${TAIL}`, { credentials: "same-origin" })
    .then((r) => {
      if (!r.ok) throw new Error(`the log: ${r.status}`);
      const skipped = Number(r.headers.get("pipewright-lines-skipped") || "0");
      return r.text().then((text) => [text, skipped]);
    })
    .then(([text, skipped]) => {
      if (skipped > 0) skippedNote(skipped);
      const lines = text.split("\n");
      if (lines[lines.length - 1] === "") lines.pop();
      for (const line of lines) queue(line);
    })
    .catch((e) => queue(`[] (${e.message})`));
});
