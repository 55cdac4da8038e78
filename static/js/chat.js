// The chat page: renders the thread, streams answers over /ws/chat/, sends feedback and the
// compare view's choice (the preferred answer of a finished comparison).
// Model text is only ever set with textContent while streaming; the finished answer's HTML
// comes from the server, rendered with raw HTML disabled and sanitised.
(function () {
  const data = JSON.parse(document.getElementById("chat-data").textContent);
  const thread = document.getElementById("thread");
  const prompt = document.getElementById("prompt");
  const modelSelect = document.getElementById("model");
  const stopButton = document.getElementById("stop");
  const wsState = document.getElementById("ws-state");
  const csrfToken = document.querySelector("[name=csrfmiddlewaretoken]").value;
  let conversationId = data.conversation_id;
  const shells = new Map();
  const running = new Set();

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function scrollDown() { window.scrollTo(0, document.body.scrollHeight); }

  // Icons are drawn as SVG, so they show without an emoji font.
  const ICONS = {
    "thumb-up": "M14 9V5a3 3 0 0 0-3-3l-4 9v11h11.28a2 2 0 0 0 2-1.7l1.38-9a2 2 0 0 0-2-2.3zM7 22H4a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2h3",
    "thumb-down": "M10 15v4a3 3 0 0 0 3 3l4-9V2H5.72a2 2 0 0 0-2 1.7l-1.38 9a2 2 0 0 0 2 2.3zm7-13h2.67A2.31 2.31 0 0 1 22 4v7a2.31 2.31 0 0 1-2.33 2H17",
    "star": "M12 2l3.09 6.26L22 9.27l-5 4.87 1.18 6.88L12 17.77l-6.18 3.25L7 14.14 2 9.27l6.91-1.01L12 2z",
  };

  function icon(name) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.setAttribute("class", "icon icon-" + name);
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", ICONS[name]);
    svg.append(path);
    return svg;
  }

  // One warning about the composer at a time; it goes away once a question is accepted.
  const warning = document.getElementById("composer-warning");
  function warn(text) { warning.textContent = text; warning.hidden = false; }
  function clearWarning() { warning.textContent = ""; warning.hidden = true; }

  // The sidebar follows the conversation being written in: a new one is listed at once, with
  // its title, and the one that just got a message moves to the top.
  function sidebarShow(id, title) {
    const list = document.getElementById("conversations");
    const href = "/chat/" + id + "/";
    list.querySelectorAll("li.empty").forEach((li) => li.remove());
    let item = Array.from(list.children).find((li) => { const a = li.querySelector("a"); return a && a.getAttribute("href") === href; });
    if (!item) {
      item = el("li");
      const link = el("a");
      link.href = href;
      item.append(link);
    }
    item.querySelector("a").textContent = title;
    list.querySelectorAll("li[aria-current]").forEach((li) => li.removeAttribute("aria-current"));
    item.setAttribute("aria-current", "true");
    list.prepend(item);
  }

  function setRunning(requestId, on) {
    if (on) running.add(requestId); else running.delete(requestId);
    stopButton.disabled = running.size === 0;
  }

  function addUser(content) { thread.append(el("div", "msg user", content)); }

  function addNotice(text, parent) { (parent || thread).append(el("div", "msg notice", text)); }

  function asked(model, temperature) {
    return model + (temperature === null || temperature === undefined ? "" : " at temperature " + temperature);
  }

  function answerShell(requestId, model, parent) {
    const box = el("div", "msg assistant");
    box.dataset.requestId = requestId || "";
    const head = el("div", "answer-head", model ? "Asked: " + model : "");
    const body = el("div", "body streaming");
    const meta = el("div", "meta");
    box.append(head, body, meta);
    (parent || thread).append(box);
    const shell = {box, head, body, meta, text: "", group: null, messageId: null, requestId: null, feedback: null, thumbs: null, choice: null, ended: false, waiting: null};
    if (requestId) shells.set(requestId, shell);
    return shell;
  }

  // From the question until the first token: which model is awaited, and for how long.
  function startWaiting(shell, model) {
    const box = el("div", "waiting");
    box.setAttribute("role", "status");
    const spinner = el("span", "spinner");
    spinner.setAttribute("aria-hidden", "true");
    const label = el("span", "waiting-label");
    const elapsed = el("span", "waiting-elapsed", "0 s");
    box.append(spinner, label, elapsed);
    shell.body.before(box);
    const began = Date.now();
    const timer = setInterval(() => { elapsed.textContent = Math.floor((Date.now() - began) / 1000) + " s"; }, 250);
    shell.waiting = {box, label, timer};
    waitingFor(shell, model);
  }

  function waitingFor(shell, model) {
    if (shell.waiting) shell.waiting.label.textContent = "Waiting for " + model + "…";
  }

  // A message too long for every model is answered by parts: how far the plan has got.
  function planProgress(msg) {
    if (msg.stage === "combining") return "Answering by parts: combining the parts…";
    if (!msg.parts_done) return "Answering by parts: " + msg.parts + " parts…";
    return "Answering by parts: part " + msg.parts_done + " of " + msg.parts;
  }

  function planNote(plan) {
    return "Assembled from " + plan.parts + " part" + (plan.parts === 1 ? "" : "s") + " of a message too long to read at once (" + plan.calls + " model calls).";
  }

  function stopWaiting(shell) {
    if (!shell.waiting) return;
    clearInterval(shell.waiting.timer);
    shell.waiting.box.remove();
    shell.waiting = null;
  }

  // The answers of one comparison; the choice is offered once every answer has ended.
  function compareGroup(expected) { return {expected, shells: [], ended: 0, choosable: null}; }

  function joinGroup(shell, group) { shell.group = group; group.shells.push(shell); }

  function costClass(badge) {
    if (badge.cost_kind) return {unknown: "unknown-price", free: "free", estimated: "estimated"}[badge.cost_kind] || "";
    if (badge.cost_state === "unknown_price") return "unknown-price";
    return badge.cost_state === "estimated" ? "estimated" : "";
  }

  function renderBadge(badge) {
    const line = el("div", "badge");
    const item = (cls, text) => line.append(el("span", cls, text));
    item("model", badge.model_ref);
    item("provider", badge.provider);
    item("locality", badge.locality === "local" ? "local" : "cloud");
    let tokens = badge.input_tokens + " in / " + badge.output_tokens + " out";
    if (badge.cached_tokens) tokens += " / " + badge.cached_tokens + " cached";
    item("tokens", tokens + " tokens");
    item("cost " + costClass(badge), badge.cost_label);
    if (badge.temperature !== undefined && badge.temperature !== null) item("temperature", "temperature " + badge.temperature);
    item("latency", "latency " + badge.latency_ms + " ms");
    item("ttft", "TTFT " + (badge.time_to_first_token_ms === null ? "–" : badge.time_to_first_token_ms + " ms"));
    item("cached", badge.cached ? "cached answer" : "not cached");
    const taken = (badge.fallbacks_taken || []).map((f) => f.from + " → " + f.to + " (" + f.error_code + ")");
    item("fallbacks", badge.fallbacks + " fallback" + (badge.fallbacks === 1 ? "" : "s") + (taken.length ? ": " + taken.join(", ") : ""));
    return line;
  }

  function table(headers, rows) {
    const t = el("table");
    const head = el("tr");
    headers.forEach((h) => head.append(el("th", "", h)));
    t.append(head);
    rows.forEach((row) => {
      const tr = el("tr");
      row.forEach((cell) => tr.append(el("td", "", cell)));
      t.append(tr);
    });
    return t;
  }

  // The explanation comes from the server as label/text pairs; the raw trace stays folded away.
  function renderWhy(trace, explanation) {
    const why = el("details", "why");
    why.append(el("summary", "", "Why this model"));
    if (!trace || !Object.keys(trace).length) { why.append(el("p", "", "No decision trace.")); return why; }
    const facts = el("dl", "why-facts");
    (explanation || []).forEach((line) => { facts.append(el("dt", "", line.label), el("dd", "", line.text)); });
    why.append(facts);
    if ((trace.candidates || []).length) {
      why.append(el("h4", "", "Candidates"));
      why.append(table(["Model", "Source", "Kept", "Reason"], trace.candidates.map((c) => [c.model, c.source, c.kept ? "yes" : "no", c.reason])));
    }
    if ((trace.agents || []).length) {
      why.append(el("h4", "", "Agent states"));
      why.append(table(["Agent", "Target", "State", "Reason"], trace.agents.map((a) => [a.agent, a.target || "overall", a.state, a.reason])));
    }
    const raw = el("details", "why-raw");
    raw.append(el("summary", "", "Details (raw decision trace)"), el("pre", "", JSON.stringify(trace, null, 2)));
    why.append(raw);
    return why;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrfToken},
      body: JSON.stringify(body),
    });
  }

  function setVote(shell, positive) {
    shell.feedback = positive;
    if (shell.thumbs) shell.thumbs.show(positive);
    if (shell.group) markPreferred(shell.group);
  }

  function renderThumbs(shell) {
    const box = el("div", "thumbs");
    const buttons = [[true, "thumb-up", "Good answer"], [false, "thumb-down", "Bad answer"]].map(([positive, iconName, title]) => {
      const b = el("button", "thumb");
      b.append(icon(iconName));
      b.type = "button";
      b.title = title;
      b.setAttribute("aria-label", title);
      b.addEventListener("click", async () => {
        const response = await post("/chat/messages/" + shell.messageId + "/feedback/", {positive});
        if (response.ok) setVote(shell, positive);
      });
      box.append(b);
      return [positive, b];
    });
    box.show = (current) => buttons.forEach(([positive, b]) => b.setAttribute("aria-pressed", current === positive ? "true" : "false"));
    box.show(shell.feedback);
    return box;
  }

  // Preferred: this answer's thumb is up and every other choosable answer's is down (what a
  // choice writes), so a reloaded page shows the choice from the stored votes alone.
  function markPreferred(group) {
    if (!group.choosable) return;
    group.choosable.forEach((shell) => {
      const preferred = shell.feedback === true && group.choosable.every((other) => other === shell || other.feedback === false);
      shell.box.classList.toggle("preferred", preferred);
      shell.choice.button.setAttribute("aria-pressed", preferred ? "true" : "false");
      shell.choice.mark.hidden = !preferred;
    });
  }

  function offerChoice(group) {
    const choosable = group.shells.filter((shell) => shell.messageId && shell.requestId);
    if (choosable.length < 2) return;
    choosable.forEach((shell) => {
      const box = el("div", "prefer");
      const button = el("button", "prefer-button", "Prefer this answer");
      button.type = "button";
      const mark = el("span", "preferred-mark");
      mark.append(icon("star"), document.createTextNode(" Preferred answer"));
      mark.hidden = true;
      button.addEventListener("click", async () => {
        const response = await post("/chat/messages/" + shell.messageId + "/prefer/", {});
        const answer = await response.json().catch(() => ({}));
        if (!response.ok) { addNotice("Choice not recorded: " + (answer.error || "error " + response.status), shell.meta); return; }
        const votes = new Map(answer.votes.map((v) => [v.message_id, v.positive]));
        group.shells.forEach((other) => { if (votes.has(other.messageId)) setVote(other, votes.get(other.messageId)); });
      });
      box.append(button, mark);
      shell.meta.append(box);
      shell.choice = {button, mark};
    });
    group.choosable = choosable;
    markPreferred(group);
  }

  function finishShell(shell, message) {
    stopWaiting(shell);
    shell.body.classList.remove("streaming");
    if (message.html) shell.body.innerHTML = message.html; else shell.body.textContent = shell.text;
    shell.meta.replaceChildren();
    const badge = message.badge || {};
    if (badge.error_code) {
      shell.meta.append(el("div", "error", badge.error_code === "CANCELLED" ? "Stopped." : "Failed: " + (message.error || badge.error_code)));
    } else if (badge.model_ref) {
      shell.head.textContent = "";
      if (badge.plan) shell.meta.append(el("p", "plan-note", planNote(badge.plan)));
      shell.meta.append(renderBadge(badge), renderWhy(badge.decision_trace, message.explanation));
    }
    shell.messageId = message.message_id || null;
    shell.requestId = message.request_id || null;
    shell.feedback = message.feedback;
    if (shell.messageId && shell.requestId) { shell.thumbs = renderThumbs(shell); shell.meta.append(shell.thumbs); }
    const first = !shell.ended;
    shell.ended = true;
    if (first && shell.group && ++shell.group.ended === shell.group.expected) offerChoice(shell.group);
  }

  function renderStored(messages) {
    const sizes = new Map();
    messages.forEach((m) => { if (m.compare_group) sizes.set(m.compare_group, (sizes.get(m.compare_group) || 0) + 1); });
    let row = null, group = null, compared = null;
    messages.forEach((m) => {
      if (m.compare_group !== group) { row = null; group = m.compare_group; }
      if (m.role === "user") addUser(m.content);
      else if (m.role === "notice") addNotice(m.content);
      else {
        if (m.compare_group && !row) { row = el("div", "compare-row"); thread.append(row); compared = compareGroup(sizes.get(m.compare_group)); }
        const shell = answerShell(null, m.model_ref, row);
        if (row) joinGroup(shell, compared);
        shell.text = m.content;
        finishShell(shell, {html: m.html, badge: m.badge, explanation: m.explanation, message_id: m.id, request_id: m.request_id, feedback: m.feedback});
      }
    });
  }

  function onMessage(msg) {
    const shell = msg.request_id ? shells.get(msg.request_id) : null;
    switch (msg.type) {
      case "chat.accepted": {
        clearWarning();
        if (msg.created) {
          conversationId = msg.conversation_id;
          history.replaceState(null, "", "/chat/" + conversationId + "/");
        }
        document.getElementById("chat-title").textContent = msg.title;
        sidebarShow(msg.conversation_id, msg.title);
        const row = msg.requests.length > 1 ? el("div", "compare-row") : null;
        const compared = row ? compareGroup(msg.requests.length) : null;
        if (row) thread.append(row);
        msg.requests.forEach((r) => {
          const shell = answerShell(r.request_id, asked(r.model, r.temperature), row);
          if (compared) joinGroup(shell, compared);
          startWaiting(shell, r.model);
          setRunning(r.request_id, true);
        });
        break;
      }
      case "chat.trimmed":
        addNotice("Context window: " + msg.dropped_messages + " earlier message(s) left out so the conversation fits (" + msg.budget_tokens + " tokens).");
        break;
      case "chat.started":
        if (shell) {
          shell.head.textContent = msg.model_ref + " · " + msg.provider + " · " + msg.locality + (msg.cached ? " · cached" : "");
          waitingFor(shell, msg.model_ref);
        }
        break;
      case "chat.progress":
        if (shell && shell.waiting) shell.waiting.label.textContent = planProgress(msg);
        break;
      case "chat.delta":
        if (shell) { stopWaiting(shell); shell.text += msg.text; shell.body.textContent = shell.text; scrollDown(); }
        break;
      case "chat.fallback":
        if (shell) {
          addNotice("Fallback: " + msg.from_model + " → " + msg.to_model + " (" + msg.error_code + ")", shell.meta);
          waitingFor(shell, msg.to_model);
        }
        break;
      case "chat.done":
        if (shell) finishShell(shell, {html: msg.html, badge: msg.badge, explanation: msg.explanation, message_id: msg.message_id, request_id: msg.request_id, feedback: null});
        setRunning(msg.request_id, false);
        break;
      case "chat.switched":
        addNotice("Switched from " + msg.from_model + " to " + msg.to_model + ": " + msg.reason);
        break;
      case "chat.error":
        if (shell) finishShell(shell, {html: msg.html, badge: {error_code: msg.code}, error: msg.message, message_id: msg.message_id, request_id: msg.request_id, feedback: null});
        else addNotice("Error: " + msg.message);
        if (msg.request_id) setRunning(msg.request_id, false);
        break;
      case "error":
        addNotice("Error: " + msg.message);
        break;
    }
  }

  const socket = liveSocket("/ws/chat/", {
    onMessage,
    onState: (state) => {
      wsState.textContent = state;
      // A dropped socket ends its answers on the server; nothing will arrive for them.
      if (state !== "connected") running.forEach((rid) => { const shell = shells.get(rid); if (shell) stopWaiting(shell); setRunning(rid, false); });
    },
  });

  // What a comparison sends: the ticked models or policies, or the chosen model at two
  // temperatures; null (with a warning shown) when the choice cannot be sent.
  function compareChoices() {
    const ticked = Array.from(document.querySelectorAll("input[name=compare]:checked")).map((c) => c.value);
    const byTemperature = document.getElementById("compare-temperatures").checked;
    if (byTemperature && ticked.length) { warn("Compare models or temperatures, not both."); return null; }
    if (byTemperature) {
      const values = ["temperature-a", "temperature-b"].map((id) => document.getElementById(id).valueAsNumber);
      if (values.some((t) => !(t >= 0 && t <= 2))) { warn("Temperatures go from 0 to 2."); return null; }
      if (values[0] === values[1]) { warn("Pick two different temperatures."); return null; }
      return values.map((temperature) => ({model: modelSelect.value, temperature}));
    }
    if (ticked.length === 1) { warn("Tick at least two models to compare, or none."); return null; }
    return ticked;
  }

  function send() {
    const content = prompt.value.trim();
    if (!content || running.size) return;
    const compare = compareChoices();
    if (compare === null) return;
    const frame = {type: "chat.request", conversation_id: conversationId, content, model: modelSelect.value, compare};
    if (!socket.send(frame)) { warn("Not connected; try again in a moment."); return; }
    addUser(content);
    prompt.value = "";
    scrollDown();
  }

  document.getElementById("composer").addEventListener("submit", (event) => { event.preventDefault(); send(); });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
  });
  stopButton.addEventListener("click", () => {
    running.forEach((rid) => { const shell = shells.get(rid); if (shell) stopWaiting(shell); });
    socket.send({type: "chat.cancel"});
  });
  renderStored(data.messages);
})();
