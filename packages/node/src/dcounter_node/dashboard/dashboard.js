// The dcounter dashboard: plain JavaScript, no dependencies, served by the node itself.
// The value comes from GET /counter/watch (server-sent events read through fetch, because
// EventSource cannot send an Authorization header); everything else from GET /cluster.
"use strict";

(() => {
  const TOKEN_KEY = "dcounter.token";
  const POLL_MS = 1000;
  const HISTORY = 300; // one sample a second: five minutes
  const KEEPALIVE_GRACE_MS = 45000; // the node sends a keepalive every 15 s
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  let value = null; // exact decimal text: values may exceed 2**53
  let cluster = null; // the last GET /cluster document
  let watchAbort = null;
  let wakeWatch = null; // ends the wait before the stream's next attempt
  const samples = []; // {t, value, writes}

  // -- token -------------------------------------------------------------------------

  function headers(extra) {
    const result = new Headers(extra || {});
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) result.set("Authorization", "Bearer " + token);
    return result;
  }

  function setupToken() {
    const input = $("token");
    input.value = sessionStorage.getItem(TOKEN_KEY) || "";
    const reconnect = () => {
      if (watchAbort) watchAbort.abort();
      if (wakeWatch) wakeWatch();
      refreshCluster();
    };
    $("save-token").addEventListener("click", () => {
      const token = input.value.trim();
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
      reconnect();
    });
    $("clear-token").addEventListener("click", () => {
      input.value = "";
      sessionStorage.removeItem(TOKEN_KEY);
      reconnect();
    });
  }

  // -- live value --------------------------------------------------------------------

  function setConnection(state, detail) {
    document.body.dataset.connection = state;
    $("connection").textContent = detail ? state + " \u2014 " + detail : state;
  }

  function showValue(text) {
    value = text;
    $("counter-value").textContent = text;
    $("value-now").textContent = text;
    refreshCluster();
  }

  function onEvent(block) {
    const data = block
      .split("\n")
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).trim())
      .join("\n");
    // Read the digits as text rather than through JSON.parse, which rounds past 2**53.
    const match = /"value"\s*:\s*(-?\d+)/.exec(data);
    if (match) showValue(match[1]);
  }

  async function readEvents(body, abort) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let lastData = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - lastData > KEEPALIVE_GRACE_MS) abort.abort();
    }, 5000);
    try {
      for (;;) {
        const { done, value: chunk } = await reader.read();
        if (done) return;
        lastData = Date.now();
        buffer += chunk.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          onEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } finally {
      clearInterval(watchdog);
    }
  }

  // What a refused stream means for the person looking at the page.
  function refusal(status) {
    if (status === 401) return "this node needs an API token (enter one below)";
    if (status === 403) return "this API token may not read the counter";
    return "HTTP " + status;
  }

  async function watch() {
    let delay = 500;
    for (;;) {
      const abort = new AbortController();
      watchAbort = abort;
      let reason = "stream ended";
      try {
        const response = await fetch("/counter/watch", {
          headers: headers({ Accept: "text/event-stream" }),
          cache: "no-store",
          signal: abort.signal,
        });
        if (!response.ok || !response.body) {
          reason = refusal(response.status);
          throw new Error(reason);
        }
        setConnection("live");
        delay = 500;
        await readEvents(response.body, abort);
      } catch (error) {
        if (error.name === "AbortError") reason = "reconnecting";
        else if (reason === "stream ended") reason = "node unreachable";
      }
      if (abort.signal.aborted && reason === "reconnecting") {
        delay = 0; // a new token, or a silent stream: try again at once
      }
      setConnection("disconnected", reason + ", retrying in " + Math.ceil(delay / 1000) + " s");
      // A new token (see setupToken) retries at once.
      await new Promise((resolve) => {
        wakeWatch = resolve;
        setTimeout(resolve, delay);
      });
      wakeWatch = null;
      delay = Math.min(Math.max(delay * 2, 500), 5000);
    }
  }

  // -- cluster -----------------------------------------------------------------------

  let polling = false;
  let again = false;

  async function refreshCluster() {
    if (polling) { again = true; return; }
    polling = true;
    try {
      do {
        again = false;
        await pollOnce();
        // Values can change many times a second: refresh at most four times a second.
        if (again) await sleep(250);
      } while (again);
    } finally {
      polling = false;
    }
  }

  async function pollOnce() {
    try {
      const response = await fetch("/cluster", { headers: headers(), cache: "no-store" });
      if (!response.ok) throw new Error(refusal(response.status));
      cluster = await response.json();
      $("cluster-error").hidden = true;
      render(cluster);
    } catch (error) {
      $("cluster-error").textContent = "cannot read /cluster: " + error.message;
      $("cluster-error").hidden = false;
    }
  }

  function render(doc) {
    $("node-address").textContent = "node " + doc.node.gossip;
    const badge = $("convergence");
    badge.textContent = doc.convergence.label;
    badge.dataset.status = doc.convergence.status;
    renderReplicas(doc.node);
    renderPeers(doc.peers);
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bar(kind, count, max, sign) {
    const row = element("div", "bar-row");
    const fill = element("span", "bar " + kind);
    fill.style.width = (max > 0 ? (75 * count) / max : 0) + "%";
    if (count === 0) fill.classList.add("empty");
    row.append(fill, element("span", "", sign + count));
    return row;
  }

  function renderReplicas(node) {
    $("replica-id").textContent = node.replica;
    $("contribution").textContent = String(node.contribution);
    const ids = new Set([...Object.keys(node.increments), ...Object.keys(node.decrements)]);
    const entries = [...ids].map((id) => ({
      id,
      inc: node.increments[id] || 0,
      dec: node.decrements[id] || 0,
    }));
    // Busiest replicas first, ties by id, so the order is stable between refreshes.
    entries.sort((a, b) => b.inc + b.dec - (a.inc + a.dec) || (a.id < b.id ? -1 : 1));
    const max = Math.max(0, ...entries.map((e) => Math.max(e.inc, e.dec)));
    const items = entries.map((entry) => {
      const item = element("li");
      item.dataset.replica = entry.id;
      item.dataset.self = String(entry.id === node.replica);
      const name = entry.id + (entry.id === node.replica ? " (this node)" : "");
      item.append(
        element("span", "name", name),
        bar("inc", entry.inc, max, "+"),
        bar("dec", entry.dec, max, "\u2212"),
      );
      return item;
    });
    $("replicas").replaceChildren(...items);
    $("replica-count").textContent =
      "(" + entries.length + (entries.length === 1 ? " entry)" : " entries)");
  }

  function ago(seconds) {
    if (seconds === null) return "no gossip yet";
    return "gossip " + (seconds < 1 ? "<1" : Math.round(seconds)) + " s ago";
  }

  function renderPeers(peers) {
    const items = peers.map((peer) => {
      const item = element("li");
      item.dataset.testid = "peer";
      item.dataset.peer = peer.gossip;
      item.dataset.status = peer.status;
      const parts = [
        element("span", "status", peer.status),
        element("span", "addr", peer.gossip),
      ];
      if (peer.value !== null) {
        parts.push(element("span", "detail", "value " + peer.value + (peer.in_sync ? " \u2713" : " (differs)")));
      } else if (peer.http === null) {
        parts.push(element("span", "detail", "value unknown: no HTTP address (--peer-http)"));
      }
      if (peer.http !== null) parts.push(element("span", "detail", "http " + peer.http));
      if (peer.error) parts.push(element("span", "detail", peer.error));
      parts.push(element("span", "detail", ago(peer.last_contact)));
      item.append(...parts);
      return item;
    });
    if (items.length === 0) items.push(element("li", "muted", "no peers"));
    $("peers").replaceChildren(...items);
    $("peer-count").textContent = "(" + peers.length + ")";
  }

  // -- sparklines --------------------------------------------------------------------

  function sample() {
    if (value === null || cluster === null || document.body.dataset.connection !== "live") return;
    samples.push({ t: Date.now(), value: Number(value), writes: cluster.node.writes });
    if (samples.length > HISTORY + 1) samples.shift();
    const rates = [];
    for (let i = 1; i < samples.length; i++) {
      const seconds = (samples[i].t - samples[i - 1].t) / 1000;
      rates.push(seconds > 0 ? Math.max(0, samples[i].writes - samples[i - 1].writes) / seconds : 0);
    }
    draw($("writes-spark"), rates);
    draw($("value-spark"), samples.map((s) => s.value));
    $("writes-now").textContent = rates.length ? rates[rates.length - 1].toFixed(1) : "0";
  }

  function draw(svg, values) {
    if (values.length < 2) return;
    const line = document.createElementNS(SVG, "polyline");
    const low = Math.min(...values);
    const span = Math.max(...values) - low || 1;
    const points = values.map((v, i) => {
      const x = (300 * (i + HISTORY - values.length)) / HISTORY;
      const y = 38 - (36 * (v - low)) / span;
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    line.setAttribute("points", points.join(" "));
    svg.replaceChildren(line);
  }

  // -- writes ------------------------------------------------------------------------

  function newKey() {
    if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function showError(message) {
    $("write-error").textContent = message;
    $("write-error").hidden = !message;
  }

  async function send(op, amount, key) {
    // A lost answer is retried with the same Idempotency-Key, so it counts once.
    for (let attempt = 1; ; attempt++) {
      try {
        return await fetch("/" + op, {
          method: "POST",
          headers: headers({ "Content-Type": "application/json", "Idempotency-Key": key }),
          body: '{"by": ' + amount + "}",
        });
      } catch (error) {
        if (attempt === 3) throw error;
        await sleep(300 * attempt);
      }
    }
  }

  async function write(op) {
    const amount = $("amount").value.trim();
    if (!/^[1-9][0-9]{0,19}$/.test(amount)) {
      showError("amount must be a whole number from 1 to 18446744073709551615");
      return;
    }
    const buttons = [$("increment"), $("decrement")];
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const response = await send(op, amount, newKey());
      if (response.ok) {
        showError("");
        return;
      }
      const text = await response.text();
      let message = text;
      try { message = JSON.parse(text).error || text; } catch (_) { /* not JSON */ }
      showError(op + " failed (HTTP " + response.status + "): " + message);
    } catch (error) {
      showError(op + " failed: " + error.message);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // -- start -------------------------------------------------------------------------

  function start() {
    setupToken();
    $("increment").addEventListener("click", () => write("increment"));
    $("decrement").addEventListener("click", () => write("decrement"));
    $("amount").addEventListener("keydown", (event) => {
      if (event.key === "Enter") write(event.shiftKey ? "decrement" : "increment");
    });
    watch();
    refreshCluster();
    setInterval(refreshCluster, POLL_MS);
    setInterval(sample, 1000);
  }

  start();
})();
