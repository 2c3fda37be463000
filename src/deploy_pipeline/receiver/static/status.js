// The receiver's status page. It reads the API with the token it was given (#token=… in the
// URL, kept in this tab's sessionStorage), follows every running run's Server-Sent Events
// through fetch (so the Authorization header can be sent), and polls the environment list for
// new runs, a page at a time: the first PAGE environments, PAGE more for each "Show more", so a
// receiver with a thousand previews is asked for (and draws) only what is shown.
// Everything on screen is built with textContent: nothing from the API is parsed as HTML.

const LIST_EVERY = 3000; // ms between looks at /api/environments for new runs and environments
const REFRESH_AFTER = 250; // ms an environment's events are gathered before it is read again
const RECONNECT_AFTER = 2000; // ms before a dropped event stream is opened again
const PAGE = 20; // environments shown at first, and added by each "Show more"
const PAGE_MAX = 200; // the most the API gives on one page

const TONES = {
  deployed: "ok",
  succeeded: "ok",
  reused: "ok",
  building: "busy",
  testing: "busy",
  deploying: "busy",
  restarting: "busy",
  stopping: "busy",
  deleting: "busy",
  waiting: "wait",
  failed: "bad",
  interrupted: "bad",
  cancelled: "off",
  skipped: "off",
  stopped: "off",
  "not deployed": "off",
  started: "busy",
};
const RUNNING = new Set(["building", "testing", "deploying", "restarting", "stopping", "deleting"]);
const ICONS = {
  database:
    "M8 1.5c-3 0-5.5.9-5.5 2.2v8.6c0 1.3 2.5 2.2 5.5 2.2s5.5-.9 5.5-2.2V3.7C13.5 2.4 11 1.5 8 1.5Zm0 1.3c2.6 0 4.2.7 4.2.9S10.6 4.6 8 4.6s-4.2-.7-4.2-.9S5.4 2.8 8 2.8Zm4.2 9.5c0 .2-1.6.9-4.2.9s-4.2-.7-4.2-.9V10c1 .5 2.5.8 4.2.8s3.2-.3 4.2-.8Zm0-3.8c0 .2-1.6.9-4.2.9s-4.2-.7-4.2-.9V6c1 .5 2.5.8 4.2.8s3.2-.3 4.2-.8Z",
  job:
    "M8 1a7 7 0 1 0 0 14A7 7 0 0 0 8 1Zm0 1.4a5.6 5.6 0 1 1 0 11.2A5.6 5.6 0 0 1 8 2.4ZM7.3 4v4.3l3.2 1.9.7-1.2-2.5-1.5V4Z",
  container:
    "M8 .8 1.5 4.2v7.6L8 15.2l6.5-3.4V4.2Zm0 1.5 4.7 2.4L8 7.2 3.3 4.7ZM2.8 5.8l4.5 2.4v5.1l-4.5-2.3Zm10.4 0v5.2l-4.5 2.3V8.2Z",
  application:
    "M5.2 3.6 1 8l4.2 4.4 1-1L3 8l3.2-3.4Zm5.6 0-1 1L13 8l-3.2 3.4 1 1L15 8Z",
};

const state = {
  token: null,
  environments: new Map(), // name → {summary, detail, shown, element, timer, fetchedAt}
  streams: new Map(), // run id → {controller, environment, lastId}
  log: null, // the run shown in the log dialog: {id, lines}
  listing: false,
  limit: PAGE, // environments asked for and shown
  loaded: false, // the list was read once: "no environments" can be said
};

// --- the token -----------------------------------------------------------------------------

function takeToken() {
  const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
  const given = fragment.get("token");
  if (given) {
    sessionStorage.setItem("deploy-pipeline-token", given);
    fragment.delete("token");
    const rest = fragment.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  state.token = sessionStorage.getItem("deploy-pipeline-token");
}

function authHeaders(extra = {}) {
  return state.token ? { ...extra, Authorization: `Bearer ${state.token}` } : extra;
}

class Unauthorized extends Error {}

async function api(path) {
  const answer = await fetch(path, { headers: authHeaders(), cache: "no-store" });
  if (answer.status === 401) throw new Unauthorized();
  if (answer.status === 404) return null;
  if (!answer.ok) throw new Error(`${path}: HTTP ${answer.status}`);
  return answer.json();
}

// --- small DOM helpers -----------------------------------------------------------------------

function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function icon(type) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("class", "svc-icon");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[type] || ICONS.container);
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

function tone(status) {
  return `tone-${TONES[status] || "off"}`;
}

function badge(status, extra = "") {
  const marker = RUNNING.has(status) ? h("span", { class: "spinner", "aria-hidden": "true" }) : h("span", { class: "dot", "aria-hidden": "true" });
  return h("span", { class: `badge ${tone(status)} ${extra}`.trim() }, marker, status);
}

function safeUrl(url) {
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  const s = Math.max(value, 0);
  if (s < 1) return `${Math.round(s * 1000)}ms`;
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.round(s)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
}

function ago(epoch) {
  if (!epoch) return "";
  const s = Date.now() / 1000 - epoch;
  if (s < 45) return "just now";
  if (s < 90) return "a minute ago";
  if (s < 3600) return `${Math.round(s / 60)} minutes ago`;
  if (s < 5400) return "an hour ago";
  if (s < 86400) return `${Math.round(s / 3600)} hours ago`;
  return new Date(epoch * 1000).toLocaleDateString();
}

// --- drawing an environment ------------------------------------------------------------------

function stageState(services) {
  const statuses = services.filter((s) => !s.skipped).map((s) => s.status);
  if (statuses.some((s) => s === "failed" || s === "interrupted")) return "failed";
  if (statuses.some((s) => RUNNING.has(s))) return statuses.find((s) => RUNNING.has(s));
  if (statuses.some((s) => s === "waiting")) return "waiting";
  if (statuses.length && statuses.every((s) => s === "deployed")) return "deployed";
  if (statuses.length && statuses.every((s) => s === statuses[0])) return statuses[0];
  return statuses.length ? "cancelled" : "skipped";
}

function serviceCard(service, fetchedAt) {
  const running = RUNNING.has(service.status);
  const elapsed = service.elapsed === null ? null : h("span", {
    class: "svc-elapsed",
    title: running ? "time in this step so far" : "how long its last step took",
    dataset: running ? { since: String(fetchedAt - service.elapsed * 1000) } : {},
  }, seconds(service.elapsed));
  const url = service.url ? safeUrl(service.url) : null;
  const targets = service.targets.length > 1
    ? h("div", { class: "svc-targets", "aria-label": "per target" },
        service.targets.map((t) => h("span", { class: `badge ${tone(t.status)}`, title: t.waiting || t.status }, `${t.name}: ${t.status}`)))
    : null;
  const label = [
    `${service.name}, ${service.type}: ${service.skipped ? "skipped" : service.status}`,
    service.waiting, service.message,
  ].filter(Boolean).join(". ");
  return h("li", {
    class: `svc ${tone(service.status)}`,
    dataset: { service: service.name, status: service.status, skipped: String(service.skipped) },
    "aria-label": label,
  },
    h("div", { class: "svc-head" }, icon(service.type), h("span", { class: "svc-name" }, service.name), h("span", { class: "svc-type" }, service.type)),
    h("div", { class: "svc-status" }, badge(service.status), elapsed),
    service.waiting ? waitingText(service.waiting, fetchedAt) : null,
    service.message && !service.skipped && service.status !== "deployed" ? h("p", { class: "svc-message" }, service.message) : null,
    service.skipped && service.status === "skipped" ? h("p", { class: "svc-message" }, "left out of this environment's runs") : null,
    url ? h("a", { class: "svc-url", href: url, target: "_blank", rel: "noopener noreferrer" }, new URL(url).host, " ↗") : null,
    targets,
  );
}

// "waiting: stage data (cache deploying, 3.2s)": the time in it goes on as the card's own does
const WAITED = /^(.*\(\S+ \S+, )(\d+(?:\.\d+)?ms|\d+(?:\.\d+)?s|\d+m\d{2}s)([;)].*)$/;

function parseSeconds(text) {
  const minutes = /^(\d+)m(\d{2})s$/.exec(text);
  if (minutes) return Number(minutes[1]) * 60 + Number(minutes[2]);
  return text.endsWith("ms") ? Number(text.slice(0, -2)) / 1000 : Number(text.slice(0, -1));
}

function waitingText(text, fetchedAt) {
  const found = WAITED.exec(text);
  if (!found) return h("p", { class: "svc-waiting" }, text);
  const since = String(fetchedAt - parseSeconds(found[2]) * 1000);
  return h("p", { class: "svc-waiting" },
    found[1], h("span", { class: "svc-elapsed-inline", dataset: { since } }, found[2]), found[3]);
}

// --- an environment's releases ---------------------------------------------------------------

// An image by digest, shortened as `history` prints it (releases._short): `…/api@sha256:0123456789ab`.
function shortImage(image) {
  const at = image.indexOf("@");
  if (at >= 0) return `${image.slice(0, at)}@${image.slice(at + 1, at + 20)}`;
  return image.startsWith("sha256:") ? image.slice(0, 19) : image;
}

function releaseAction(release) {
  if (release.action === "promote" && release.source) return `promote from ${release.source}`;
  if (release.action === "rollback" && release.rolled_back_to !== null) return `rollback to v${release.rolled_back_to}`;
  return release.action;
}

function releaseTime(release) {
  const epoch = Date.parse(release.finished) / 1000;
  return h("time", { class: "release-when", datetime: release.finished, title: release.finished }, ago(epoch));
}

function releaseCommit(release) {
  if (!release.commit) return h("span", { class: "release-commit none" }, "no commit");
  return h("span", { class: "chip sha release-commit", title: `commit ${release.commit}` },
    h("span", { class: "chip-label" }, "commit"), release.commit.slice(0, 7));
}

function currentRelease(release, label, targets) {
  const images = Object.entries(release.images).map(([service, image]) =>
    h("li", { class: "chip release-image", title: `${service}: ${image}`, dataset: { imageOf: service } },
      h("span", { class: "chip-label" }, service), shortImage(image)));
  return h("div", { class: "release-current", dataset: { release: String(release.id), target: release.target } },
    h("div", { class: "release-line" },
      h("span", { class: "release-label" }, label),
      h("strong", { class: "release-id" }, `v${release.id}`),
      h("span", { class: "release-action" }, releaseAction(release)),
      releaseTime(release),
      releaseCommit(release),
      targets > 1 ? h("span", { class: "release-target" }, `on ${release.target}`) : null),
    images.length ? h("ul", { class: "release-images", "aria-label": `images of v${release.id}` }, images) : null);
}

function releasesPanel(detail) {
  const releases = detail.releases || { current: [], recent: [] };
  const label = ["stopped", "not deployed"].includes(detail.status) ? "Last release" : "Current release";
  const body = releases.current.length
    ? releases.current.map((r) => currentRelease(r, label, detail.targets?.length || 1))
    : [h("p", { class: "release-none" }, "No release yet")];
  const recent = releases.recent.length
    ? h("div", { class: "release-recent" },
        h("h4", { class: "release-recent-title" }, `Last ${releases.recent.length === 1 ? "release" : `${releases.recent.length} releases`}`),
        h("ol", { class: "release-list" }, releases.recent.map((r) =>
          h("li", { dataset: { release: String(r.id) } },
            h("span", { class: "release-id" }, `v${r.id}`),
            h("span", { class: "release-action" }, releaseAction(r)),
            releaseTime(r),
            releaseCommit(r)))))
    : null;
  return h("section", { class: "releases", "aria-label": `releases of ${detail.name}` }, body, recent);
}

function environmentCard(detail, fetchedAt) {
  const id = `env-${detail.name}`;
  const meta = [];
  if (detail.pull_request !== null) {
    const prUrl = detail.pull_request_url ? safeUrl(detail.pull_request_url) : null;
    const text = `#${detail.pull_request}${detail.pull_request_title ? ` ${detail.pull_request_title}` : ""}`;
    meta.push(prUrl
      ? h("a", { class: "pr", href: prUrl, target: "_blank", rel: "noopener noreferrer", title: `Pull request #${detail.pull_request} on GitHub` }, text, " ↗")
      : h("span", { class: "pr" }, text));
  }
  if (detail.branch) meta.push(h("span", { class: "chip branch", title: `branch ${detail.branch}` }, h("span", { class: "chip-label" }, "branch"), detail.branch));
  if (detail.source) meta.push(h("span", {}, detail.pull_request !== null ? "preview of " : "clone of ", h("strong", {}, detail.source)));
  if (detail.sha) meta.push(h("span", { class: "chip sha", title: `commit ${detail.sha}` }, h("span", { class: "chip-label" }, "commit"), detail.sha.slice(0, 7)));
  if (detail.targets?.length) meta.push(h("span", {}, `on ${detail.targets.join(", ")}`));
  if (detail.run) {
    const when = detail.run.status === "running" ? `started ${ago(detail.run.started_at)}` : ago(detail.run.finished_at || detail.run.started_at);
    meta.push(h("span", {}, `${detail.run.action} ${detail.run.status === "running" ? "running" : detail.run.status} · ${when}`));
  }
  const actions = [];
  const url = detail.url ? safeUrl(detail.url) : null;
  if (url) {
    actions.push(h("a", { class: "button primary deployment", href: url, target: "_blank", rel: "noopener noreferrer" }, "Open deployment ↗"));
  }
  if (detail.last_run !== null && detail.last_run !== undefined) {
    actions.push(h("a", {
      class: "button run-log",
      href: `/api/runs/${detail.last_run}`,
      onclick: (event) => {
        if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
        event.preventDefault();
        openLog(detail.last_run);
      },
    }, `Run #${detail.last_run} log`));
  }
  const stages = h("ol", { class: "stages", "aria-label": `stages of ${detail.name}, in order` },
    detail.stages.map((stage, i) => {
      const status = stageState(stage.services);
      return h("li", { class: "stage", dataset: { stage: stage.name } },
        h("h4", { class: `stage-head ${tone(status)}` },
          h("span", { class: "stage-num", "aria-hidden": "true" }, String(i + 1)),
          h("span", { class: "stage-name" }, h("span", { class: "visually-hidden" }, `Stage ${i + 1}: `), stage.name),
          h("span", { class: "stage-state" }, status)),
        h("ul", { class: "services" }, stage.services.map((s) => serviceCard(s, fetchedAt))));
    }));
  return h("article", {
    class: "env",
    id,
    dataset: { env: detail.name, status: detail.status, run: detail.run ? String(detail.run.id) : "" },
    "aria-labelledby": `${id}-title`,
  },
    h("header", { class: "env-head" },
      h("div", {},
        h("div", { class: "env-title" },
          h("h3", { id: `${id}-title` }, h("a", { href: `#${id}` }, detail.name)),
          badge(detail.status, "env-status")),
        h("div", { class: "env-meta" }, meta)),
      h("div", { class: "env-actions" }, actions)),
    releasesPanel(detail),
    stages);
}

function place(name) {
  const entry = state.environments.get(name);
  if (!entry || !entry.element) return;
  const preview = entry.summary.pull_request !== null;
  const parent = document.getElementById(preview ? "previews" : "environments");
  if (entry.element.parentElement !== parent) parent.append(entry.element);
}

function arrange() {
  const shown = [...state.environments.values()].filter((e) => e.element);
  const previews = shown.filter((e) => e.summary.pull_request !== null);
  const others = shown.filter((e) => e.summary.pull_request === null);
  previews.sort((a, b) => b.summary.pull_request - a.summary.pull_request);
  for (const [list, id] of [[previews, "previews"], [others, "environments"]]) {
    const parent = document.getElementById(id);
    for (const entry of list) if (entry.element) parent.append(entry.element);
    document.getElementById(`${id}-group`).hidden = list.length === 0;
    document.getElementById(`${id}-count`).textContent = String(list.length);
  }
  document.getElementById("empty").hidden = state.environments.size !== 0 || !state.loaded;
}

function render(name) {
  const entry = state.environments.get(name);
  if (!entry || !entry.detail) return;
  const shown = JSON.stringify(entry.detail);
  if (shown === entry.shown) return;
  entry.shown = shown;
  const focused = document.activeElement;
  const key = focused && entry.element?.contains(focused) ? focused.className : null;
  const element = environmentCard(entry.detail, entry.fetchedAt);
  if (entry.element) entry.element.replaceWith(element);
  entry.element = element;
  place(name);
  if (key) element.getElementsByClassName(key)[0]?.focus();
}

// --- reading the API -------------------------------------------------------------------------

function refreshSoon(name) {
  const entry = state.environments.get(name);
  if (!entry || entry.timer) return;
  entry.timer = setTimeout(() => {
    entry.timer = null;
    refresh(name).catch(failed);
  }, REFRESH_AFTER);
}

async function refresh(name) {
  const detail = await api(`/api/environments/${encodeURIComponent(name)}`);
  const entry = state.environments.get(name);
  if (!entry) return;
  if (detail === null) {
    forget(name);
    return;
  }
  entry.detail = detail;
  entry.fetchedAt = Date.now();
  render(name);
  arrange();
  if (detail.run && detail.run.status === "running") follow(detail.run.id, name);
  if (detail.repository) {
    const repository = document.getElementById("repository");
    repository.textContent = detail.repository;
    repository.hidden = false;
  }
}

function forget(name) {
  const entry = state.environments.get(name);
  if (!entry) return;
  entry.element?.remove();
  clearTimeout(entry.timer);
  state.environments.delete(name);
  arrange();
}

// The first state.limit environments, read a page (of at most PAGE_MAX) at a time.
async function firstEnvironments() {
  const environments = [];
  let path = `/api/environments?limit=${Math.min(state.limit, PAGE_MAX)}`;
  let total = 0;
  while (path && environments.length < state.limit) {
    const answer = await api(path);
    environments.push(...answer.environments);
    total = answer.total;
    path = answer.next;
  }
  return { environments: environments.slice(0, state.limit), total };
}

async function list() {
  if (state.listing) return;
  state.listing = true;
  try {
    const answer = await firstEnvironments();
    document.getElementById("token-form").hidden = true;
    const seen = new Set();
    for (const summary of answer.environments) {
      seen.add(summary.name);
      const entry = state.environments.get(summary.name);
      const changed = !entry || entry.summary.status !== summary.status || entry.summary.last_run !== summary.last_run;
      if (!entry) state.environments.set(summary.name, { summary, detail: null, shown: null, element: null, timer: null, fetchedAt: 0 });
      else entry.summary = summary;
      if (changed) refreshSoon(summary.name);
    }
    for (const name of [...state.environments.keys()]) if (!seen.has(name)) forget(name);
    state.loaded = true;
    const more = answer.total > answer.environments.length;
    document.getElementById("more").hidden = !more;
    document.getElementById("more-text").textContent = more
      ? `Showing ${answer.environments.length} of ${answer.total} environments`
      : "";
    arrange();
    showLive();
    document.getElementById("notice").hidden = true;
    document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } finally {
    state.listing = false;
  }
}

function showLive(offline = false) {
  const live = document.getElementById("live");
  const text = document.getElementById("live-text");
  const following = state.streams.size;
  const next = offline ? "offline" : following ? "streaming" : "live";
  const words = offline
    ? "Reconnecting…"
    : following ? `Live · following ${following} run${following > 1 ? "s" : ""}` : "Live";
  if (live.dataset.state !== next || text.textContent !== words) {
    live.dataset.state = next;
    text.textContent = words;
  }
}

function failed(error) {
  if (error instanceof Unauthorized) {
    const form = document.getElementById("token-form");
    if (form.hidden) {
      form.hidden = false;
      document.getElementById("token-input").focus();
    }
    document.getElementById("live").dataset.state = "offline";
    document.getElementById("live-text").textContent = state.token ? "Token refused" : "Token needed";
    return;
  }
  const notice = document.getElementById("notice");
  notice.textContent = `The receiver does not answer: ${error.message}. Trying again…`;
  notice.hidden = false;
  showLive(true);
}

// --- following a run's events (Server-Sent Events over fetch) --------------------------------

function follow(runId, environment) {
  if (state.streams.has(runId)) return;
  const stream = { controller: new AbortController(), environment, lastId: null };
  state.streams.set(runId, stream);
  showLive();
  consume(runId, stream).finally(() => {
    state.streams.delete(runId);
    showLive();
  });
}

async function consume(runId, stream) {
  const { signal } = stream.controller;
  while (!signal.aborted) {
    let ended = false;
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (stream.lastId !== null) headers["Last-Event-ID"] = stream.lastId;
      const answer = await fetch(`/api/runs/${runId}/events`, { headers, signal, cache: "no-store" });
      if (answer.status === 401) throw new Unauthorized();
      if (answer.status === 404) return;
      if (!answer.ok || !answer.body) throw new Error(`HTTP ${answer.status}`);
      const reader = answer.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
          if (dispatch(runId, stream, block)) ended = true;
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof Unauthorized) {
        failed(error);
        return;
      }
    }
    if (ended) return;
    await new Promise((resolve) => setTimeout(resolve, RECONNECT_AFTER));
  }
}

function dispatch(runId, stream, block) {
  let name = "message";
  let id = null;
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  if (id !== null) stream.lastId = id;
  if (name === "run-event") {
    const event = JSON.parse(data.join("\n"));
    if (state.log && state.log.id === runId) addLogLine(event);
    refreshSoon(stream.environment);
    return false;
  }
  if (name === "end") {
    refreshSoon(stream.environment);
    if (state.log && state.log.id === runId) {
      const { status } = JSON.parse(data.join("\n") || "{}");
      document.getElementById("log-summary").textContent = `Run ${runId} ${status}.`;
    }
    list().catch(failed);
    return true;
  }
  return false;
}

// --- the run log dialog ----------------------------------------------------------------------

function addLogLine(event) {
  const where = [event.environment, event.target, event.stage].filter(Boolean).join(" / ");
  const what = event.phase === "run" ? `run ${event.status}` : `${event.service} ${event.phase} ${event.status}`;
  const text = [where, event.message, event.url].filter(Boolean).join(" — ");
  document.getElementById("log-lines").append(
    h("li", { class: tone(event.status) },
      h("span", { class: "ts" }, `${Number(event.ts).toFixed(2)}s`),
      h("span", { class: "what" }, what),
      h("span", { class: "text" }, text)));
}

async function openLog(runId) {
  const dialog = document.getElementById("log");
  const lines = document.getElementById("log-lines");
  lines.replaceChildren();
  document.getElementById("log-title").textContent = `Run #${runId}`;
  document.getElementById("log-raw").href = `/api/runs/${runId}`;
  document.getElementById("log-summary").textContent = "Loading…";
  state.log = { id: runId };
  if (!dialog.open) dialog.showModal();
  try {
    const run = await api(`/api/runs/${runId}`);
    if (run === null) {
      document.getElementById("log-summary").textContent = `Run ${runId} is not known any more.`;
      return;
    }
    const status = run.status === "running" ? "running: new lines appear as they come" : run.status;
    document.getElementById("log-summary").textContent =
      `${run.action} of ${run.environments.join(", ")}, ${status}; started ${ago(run.started_at)}.`;
    lines.replaceChildren();
    for (const event of run.events) addLogLine(event);
  } catch (error) {
    document.getElementById("log-summary").textContent = `Could not read the run: ${error.message}`;
  }
}

// --- start -----------------------------------------------------------------------------------

function tick() {
  const now = Date.now();
  for (const element of document.querySelectorAll("[data-since]")) {
    element.textContent = seconds((now - Number(element.dataset.since)) / 1000);
  }
}

async function poll() {
  try {
    await list();
  } catch (error) {
    failed(error);
  }
  setTimeout(poll, LIST_EVERY);
}

function start() {
  takeToken();
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = document.getElementById("token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem("deploy-pipeline-token", value);
    state.token = value;
    document.getElementById("token-form").hidden = true;
    list().catch(failed);
  });
  document.getElementById("more-button").addEventListener("click", () => {
    state.limit += PAGE;
    list().catch(failed);
  });
  const dialog = document.getElementById("log");
  document.getElementById("log-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => { state.log = null; });
  dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
  setInterval(tick, 1000);
  poll();
}

start();
