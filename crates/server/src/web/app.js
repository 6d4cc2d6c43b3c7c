// pipewright's dashboard: confirmation of forms that ask for it, and a run's live log
// (Server-Sent Events from /api/v1/runs/ID/logs?follow=true). Log lines are added as text,
// never as markup.
"use strict";

document.addEventListener("submit", (e) => {
  const question = e.target.dataset && e.target.dataset.confirm;
  if (question && !window.confirm(question)) e.preventDefault();
});

document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("log");
  if (!log) return;
  const run = log.dataset.run;
  const done = log.dataset.done === "true";
  const source = new EventSource(`/api/v1/runs/${run}/logs?follow=true`);
  const add = (text) => {
    const line = document.createElement("div");
    // ANSI colour codes are dropped; the text stays as it came.
    const plain = text.replace(/\x1b\[[0-9;]*m/g, "");
    if (/##\[(group|endgroup)\]/.test(plain)) line.className = "group";
    if (/##\[error\]/.test(plain)) line.className = "err";
    line.textContent = plain;
    const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.appendChild(line);
    if (atEnd) log.scrollTop = log.scrollHeight;
  };
  source.addEventListener("line", (e) => add(e.data));
  source.addEventListener("done", (e) => {
    source.close();
    // The statuses changed while it ran: show them.
    if (!done) window.setTimeout(() => window.location.reload(), 300);
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) add("(the log stream ended)");
  };
});
