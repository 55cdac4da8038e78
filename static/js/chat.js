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

  function setRunning(requestId, on) {
    if (on) running.add(requestId); else running.delete(requestId);
    stopButton.disabled = running.size === 0;
  }

  function addUser(content) { thread.append(el("div", "msg user", content)); }

  function addNotice(text, parent) { (parent || thread).append(el("div", "msg notice", text)); }

  function answerShell(requestId, model, parent) {
    const box = el("div", "msg assistant");
    box.dataset.requestId = requestId || "";
    const head = el("div", "answer-head", model ? "Asked: " + model : "");
    const body = el("div", "body streaming");
    const meta = el("div", "meta");
    box.append(head, body, meta);
    (parent || thread).append(box);
    const shell = {box, head, body, meta, text: "", group: null, messageId: null, requestId: null, feedback: null, thumbs: null, choice: null, ended: false};
    if (requestId) shells.set(requestId, shell);
    return shell;
  }

  // The answers of one comparison; the choice is offered once every answer has ended.
  function compareGroup(expected) { return {expected, shells: [], ended: 0, choosable: null}; }

  function joinGroup(shell, group) { shell.group = group; group.shells.push(shell); }

  function costClass(state) {
    if (state === "unknown_price") return "unknown-price";
    return state === "estimated" ? "estimated" : "";
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
    item("cost " + costClass(badge.cost_state), badge.cost_label);
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

  function renderWhy(trace) {
    const why = el("details", "why");
    why.append(el("summary", "", "Why this model"));
    if (!trace || !Object.keys(trace).length) { why.append(el("p", "", "No decision trace.")); return why; }
    const request = trace.request || {};
    const facts = el("ul");
    const fact = (label, value) => { if (value !== undefined && value !== null && value !== "") facts.append(el("li", "", label + ": " + value)); };
    fact("Policy", trace.policy);
    fact("Task", request.task_type);
    fact("Complexity", request.complexity);
    fact("Override", request.override);
    fact("Rule", trace.rule);
    if (trace.sticky) fact("Sticky", (trace.sticky.kept ? "kept" : "not kept") + " – " + trace.sticky.reason);
    fact("Chain", (trace.chain || []).join(" → "));
    fact("Outcome", trace.outcome);
    why.append(facts);
    if ((trace.candidates || []).length) {
      why.append(el("h4", "", "Candidates"));
      why.append(table(["Model", "Source", "Kept", "Reason"], trace.candidates.map((c) => [c.model, c.source, c.kept ? "yes" : "no", c.reason])));
    }
    if ((trace.agents || []).length) {
      why.append(el("h4", "", "Agent states"));
      why.append(table(["Agent", "Target", "State", "Reason"], trace.agents.map((a) => [a.agent, a.target || "overall", a.state, a.reason])));
    }
    why.append(el("pre", "", JSON.stringify(trace, null, 2)));
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
    const buttons = [[true, "👍", "Good answer"], [false, "👎", "Bad answer"]].map(([positive, label, title]) => {
      const b = el("button", "thumb", label);
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
      const mark = el("span", "preferred-mark", "★ Preferred answer");
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
    shell.body.classList.remove("streaming");
    if (message.html) shell.body.innerHTML = message.html; else shell.body.textContent = shell.text;
    shell.meta.replaceChildren();
    const badge = message.badge || {};
    if (badge.error_code) {
      shell.meta.append(el("div", "error", badge.error_code === "CANCELLED" ? "Stopped." : "Failed: " + (message.error || badge.error_code)));
    } else if (badge.model_ref) {
      shell.head.textContent = "";
      shell.meta.append(renderBadge(badge), renderWhy(badge.decision_trace));
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
        finishShell(shell, {html: m.html, badge: m.badge, message_id: m.id, request_id: m.request_id, feedback: m.feedback});
      }
    });
  }

  function onMessage(msg) {
    const shell = msg.request_id ? shells.get(msg.request_id) : null;
    switch (msg.type) {
      case "chat.accepted": {
        if (msg.created) {
          conversationId = msg.conversation_id;
          history.replaceState(null, "", "/chat/" + conversationId + "/");
          document.getElementById("chat-title").textContent = msg.title;
        }
        const row = msg.requests.length > 1 ? el("div", "compare-row") : null;
        const compared = row ? compareGroup(msg.requests.length) : null;
        if (row) thread.append(row);
        msg.requests.forEach((r) => {
          const shell = answerShell(r.request_id, r.model, row);
          if (compared) joinGroup(shell, compared);
          setRunning(r.request_id, true);
        });
        break;
      }
      case "chat.trimmed":
        addNotice("Context window: " + msg.dropped_messages + " earlier message(s) left out so the conversation fits (" + msg.budget_tokens + " tokens).");
        break;
      case "chat.started":
        if (shell) shell.head.textContent = msg.model_ref + " · " + msg.provider + " · " + msg.locality + (msg.cached ? " · cached" : "");
        break;
      case "chat.delta":
        if (shell) { shell.text += msg.text; shell.body.textContent = shell.text; scrollDown(); }
        break;
      case "chat.fallback":
        if (shell) addNotice("Fallback: " + msg.from_model + " → " + msg.to_model + " (" + msg.error_code + ")", shell.meta);
        break;
      case "chat.done":
        if (shell) finishShell(shell, {html: msg.html, badge: msg.badge, message_id: msg.message_id, request_id: msg.request_id, feedback: null});
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
      if (state !== "connected") running.forEach((rid) => setRunning(rid, false));
    },
  });

  function send() {
    const content = prompt.value.trim();
    if (!content || running.size) return;
    const compare = Array.from(document.querySelectorAll("input[name=compare]:checked")).map((c) => c.value);
    if (compare.length === 1) { addNotice("Tick at least two models to compare, or none."); return; }
    const frame = {type: "chat.request", conversation_id: conversationId, content, model: modelSelect.value, compare};
    if (!socket.send(frame)) { addNotice("Not connected; try again in a moment."); return; }
    addUser(content);
    prompt.value = "";
    scrollDown();
  }

  document.getElementById("composer").addEventListener("submit", (event) => { event.preventDefault(); send(); });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
  });
  stopButton.addEventListener("click", () => socket.send({type: "chat.cancel"}));
  renderStored(data.messages);
})();
