// The pages of /ui/: a hash router over a few sections of index.html, each filled from /system.

import {
  ApiError,
  CODE_ANNOTATION,
  DEFAULT_NAMESPACE,
  call,
  functionPath,
  ndjson,
  origin,
  request,
  routeUrls,
} from "./api.js";
import { MetricsHistory, drawLine } from "./metrics.js";

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && !key.startsWith("aria-") && !key.startsWith("data-")) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function banner(message) {
  const node = $("#banner");
  node.textContent = message || "";
  node.hidden = !message;
}

function say(form, message, failed = false) {
  const node = $(".result", form);
  node.textContent = message;
  node.classList.toggle("error", failed);
}

function problem(error) {
  return error instanceof ApiError ? error.message : `cannot reach the gateway: ${error.message}`;
}

function pairs(text, separator) {
  const out = {};
  for (const line of text.split("\n")) {
    const at = line.indexOf(separator);
    if (at > 0) out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

// -- the router --------------------------------------------------------------------------------------------

const pages = {
  functions: showFunctions,
  deploy: showDeploy,
  function: showFunction,
  secrets: showSecrets,
  volumes: showVolumes,
};
let leave = () => {};

async function route() {
  const [page, ...rest] = (location.hash.slice(1) || "functions").split("/");
  const show = pages[page] || showFunctions;
  const id = pages[page] ? page : "functions";
  leave();
  leave = () => {};
  banner("");
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== `page-${id}`;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === id) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  try {
    await show(decodeURIComponent(rest.join("/")));
  } catch (error) {
    banner(problem(error));
  }
}

// -- functions ---------------------------------------------------------------------------------------------

function statusOf(fn) {
  if ((fn.availableReplicas || 0) > 0) return "Ready";
  if ((fn.replicas || 0) === 0) return "Scaled to zero";
  return "Not ready";
}

function sourceOf(fn) {
  const digest = fn.annotations && fn.annotations[CODE_ANNOTATION];
  return digest ? `code ${digest.slice(0, 19)}…` : fn.image;
}

function copyField(url, label) {
  const input = el("input", { value: url, readOnly: true, "aria-label": label, class: "url" });
  const button = el("button", {
    type: "button",
    textContent: "Copy",
    "aria-label": `Copy ${label}`,
    onclick: async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(url);
      } catch {
        document.execCommand("copy");
      }
      button.textContent = "Copied";
      setTimeout(() => (button.textContent = "Copy"), 1500);
    },
  });
  return el("div", { class: "copy" }, input, button);
}

async function showFunctions() {
  const functions = await call("GET", "/system/functions");
  functions.sort((a, b) => (b.invocationCount || 0) - (a.invocationCount || 0) || a.name.localeCompare(b.name));
  const body = $("#functions-table tbody");
  body.replaceChildren(
    ...functions.map((fn) => {
      const link = `#function/${encodeURIComponent(fn.name)}`;
      return el(
        "tr",
        { "data-function": fn.name },
        el("th", { scope: "row" }, el("a", { href: link }, fn.name)),
        el("td", { "data-label": "Status" }, statusOf(fn)),
        el("td", { "data-label": "Replicas" }, `${fn.availableReplicas || 0}/${fn.replicas || 0}`),
        el("td", { "data-label": "Invocations" }, String(fn.invocationCount || 0)),
        el("td", { "data-label": "Image or code", class: "source" }, sourceOf(fn)),
        el("td", { "data-label": "URL" }, copyField(origin + functionPath(fn), `URL of ${fn.name}`)),
        el(
          "td",
          { "data-label": "Actions" },
          el("a", { href: link, class: "button", "aria-label": `Invoke ${fn.name}`, textContent: "Invoke" }),
        ),
      );
    }),
  );
  $("#functions-table").hidden = functions.length === 0;
  $("#functions-empty").hidden = functions.length > 0;
}

// -- deploy ------------------------------------------------------------------------------------------------

async function showDeploy() {
  const select = $("#code-runtime");
  if (select.options.length) return;
  const runtimes = await call("GET", "/system/runtimes");
  select.replaceChildren(...runtimes.map((r) => el("option", { value: r.image, textContent: r.name })));
}

async function deployImage(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const name = form.elements.name.value.trim();
  const spec = { service: name, image: form.elements.image.value.trim() };
  const env = pairs(form.elements.env.value, "=");
  if (Object.keys(env).length) spec.envVars = env;
  await deploy(form, spec);
}

async function deploy(form, spec) {
  const button = $("button[type=submit]", form);
  button.disabled = true;
  say(form, `Deploying ${spec.service}…`);
  try {
    // As faas-cli deploys: an update (PUT) of the function, or a new one (POST) when there is none yet.
    let verb = "Updated";
    try {
      await call("PUT", "/system/functions", { json: spec });
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      await call("POST", "/system/functions", { json: spec });
      verb = "Deployed";
    }
    say(form, "");
    $(".result", form).append(`${verb} ${spec.service}. `, el("a", { href: `#function/${spec.service}` }, "Open it"));
  } catch (error) {
    say(form, `Not deployed: ${problem(error)}`, true);
  } finally {
    button.disabled = false;
  }
}

async function deployCode(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const progress = $(".progress", form);
  progress.textContent = "";
  progress.hidden = true;
  const file = form.elements.file.files[0];
  const filename = file ? file.name : "handler.py";
  const data = file ? file : new Blob([form.elements.handler.value], { type: "text/x-python" });
  say(form, "Uploading the code…");
  let stored;
  try {
    stored = await call("POST", `/system/code?filename=${encodeURIComponent(filename)}`, {
      body: data,
      headers: { "Content-Type": "application/octet-stream" },
    });
    const image = form.elements.runtime.value;
    if ((stored.files || []).includes("requirements.txt")) {
      say(form, "Installing the requirements…");
      progress.hidden = false;
      const response = await request("POST", `/system/code/${stored.digest}/dependencies`, { json: { image } });
      for await (const item of ndjson(response)) {
        if (item.line !== undefined) progress.textContent += `${item.line}\n`;
        if (item.error) throw new ApiError(422, item.error);
      }
    }
    await deploy(form, { service: form.elements.name.value.trim(), image, annotations: { [CODE_ANNOTATION]: stored.digest } });
  } catch (error) {
    say(form, `Not deployed: ${problem(error)}`, true);
  }
}

// -- one function ------------------------------------------------------------------------------------------

let current = null;

async function showFunction(name) {
  current = await call("GET", `/system/function/${encodeURIComponent(name)}`);
  $("#function-title").textContent = current.name;
  const facts = {
    Status: statusOf(current),
    Replicas: `${current.availableReplicas || 0} ready of ${current.replicas || 0}`,
    "Image or code": sourceOf(current),
    Namespace: current.namespace || DEFAULT_NAMESPACE,
  };
  $("#function-facts").replaceChildren(
    ...Object.entries(facts).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]),
    el("dt", {}, "URL"),
    el("dd", {}, copyField(origin + functionPath(current), `URL of ${current.name}`)),
    ...routeUrls(current).flatMap((url, i) => [
      el("dt", {}, i === 0 ? "Routes" : ""),
      el("dd", {}, copyField(url, `Route of ${current.name}: ${url}`)),
    ]),
  );
  $("#scale-replicas").value = current.replicas || 0;
  for (const form of ["#scale-form"]) say($(form), "");
  say($("#remove-button").parentElement, "");
  $("#invoke-answer").hidden = true;
  stopLogs();
  $("#logs-output").textContent = "";

  const key = `${current.name}.${current.namespace || DEFAULT_NAMESPACE}`;
  const draw = () => {
    const points = history.series(key);
    drawLine($("#rate-chart"), points, (p) => p.rate);
    drawLine($("#latency-chart"), points, (p) => p.latency);
    const last = points[points.length - 1];
    $("#rate-now").textContent = last ? last.rate.toFixed(2) : "–";
    const latest = [...points].reverse().find((p) => p.latency !== null);
    $("#latency-now").textContent = latest ? latest.latency.toFixed(1) : "–";
  };
  const tick = async () => {
    try {
      await history.poll();
      draw();
    } catch {
      /* the next tick tries again */
    }
  };
  await tick();
  const timer = setInterval(tick, 5000);
  leave = () => {
    clearInterval(timer);
    stopLogs();
  };
}

const history = new MetricsHistory();

async function invoke(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const method = form.elements.method.value;
  const headers = pairs(form.elements.headers.value, ":");
  const init = { headers, credentials: "omit" };
  if (method !== "GET" && method !== "HEAD") {
    init.body = form.elements.body.value;
    headers["Content-Type"] = headers["Content-Type"] || form.elements.type.value;
  }
  const button = $("button[type=submit]", form);
  button.disabled = true;
  const started = performance.now();
  try {
    const response = await request(method, functionPath(current), init);
    const text = await response.text();
    const ms = performance.now() - started;
    $("#invoke-status").textContent = `${response.status} ${response.statusText}`.trim();
    $("#invoke-duration").textContent = `${ms.toFixed(0)} ms`;
    $("#invoke-response-headers").textContent = [...response.headers].map(([k, v]) => `${k}: ${v}`).join("\n");
    let shown = text;
    if ((response.headers.get("Content-Type") || "").includes("json")) {
      try {
        shown = JSON.stringify(JSON.parse(text), null, 2);
      } catch {
        /* shown as it came */
      }
    }
    $("#invoke-response-body").textContent = shown;
  } catch (error) {
    $("#invoke-status").textContent = "no answer";
    $("#invoke-duration").textContent = `${(performance.now() - started).toFixed(0)} ms`;
    $("#invoke-response-headers").textContent = "";
    $("#invoke-response-body").textContent = String(error.message);
  } finally {
    $("#invoke-answer").hidden = false;
    button.disabled = false;
  }
}

async function scale(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const replicas = Number(form.elements.replicas.value);
  const button = $("button[type=submit]", form);
  button.disabled = true;
  say(form, `Scaling to ${replicas}…`);
  try {
    await call("POST", `/system/scale-function/${encodeURIComponent(current.name)}`, {
      json: { serviceName: current.name, replicas, namespace: current.namespace || DEFAULT_NAMESPACE },
    });
    say(form, `Scaled ${current.name} to ${replicas}.`);
    const fresh = await call("GET", `/system/function/${encodeURIComponent(current.name)}`);
    $("#function-facts dd:nth-of-type(2)").textContent = `${fresh.availableReplicas || 0} ready of ${fresh.replicas || 0}`;
  } catch (error) {
    say(form, `Not scaled: ${problem(error)}`, true);
  } finally {
    button.disabled = false;
  }
}

let logs = null;

function stopLogs() {
  if (logs) logs.abort();
  logs = null;
  const toggle = $("#logs-toggle");
  toggle.textContent = "Follow logs";
  toggle.setAttribute("aria-pressed", "false");
}

async function toggleLogs() {
  if (logs) return stopLogs();
  const output = $("#logs-output");
  const toggle = $("#logs-toggle");
  logs = new AbortController();
  toggle.textContent = "Stop following";
  toggle.setAttribute("aria-pressed", "true");
  const query = new URLSearchParams({
    name: current.name,
    namespace: current.namespace || DEFAULT_NAMESPACE,
    follow: "true",
    tail: "100",
  });
  try {
    const response = await request("GET", `/system/logs?${query}`, { signal: logs.signal });
    for await (const item of ndjson(response)) {
      const near = output.scrollTop + output.clientHeight >= output.scrollHeight - 20;
      output.append(`${item.timestamp} ${item.instance} ${item.text}\n`);
      if (near) output.scrollTop = output.scrollHeight;
    }
  } catch (error) {
    if (error.name !== "AbortError") output.append(`[logs stopped: ${problem(error)}]\n`);
  }
  stopLogs();
}

function confirmed(text, action) {
  const dialog = $("#confirm-dialog");
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

async function remove() {
  const name = current.name;
  if (!(await confirmed(`Remove the function ${name}?`, `Remove ${name}`))) return;
  const box = $("#remove-button").parentElement;
  say(box, `Removing ${name}…`);
  try {
    await call("DELETE", "/system/functions", {
      json: { functionName: name, namespace: current.namespace || DEFAULT_NAMESPACE },
    });
    location.hash = "#functions";
  } catch (error) {
    say(box, `Not removed: ${problem(error)}`, true);
  }
}

// -- secrets and volumes -----------------------------------------------------------------------------------

function removable(label, used, onRemove) {
  return el(
    "li",
    {},
    el("span", { class: "item-name" }, label),
    el("span", { class: "hint" }, used),
    el("button", { type: "button", class: "danger", "aria-label": `Remove ${label}`, textContent: "Remove", onclick: onRemove }),
  );
}

async function showSecrets() {
  const secrets = await call("GET", "/system/secrets");
  $("#secrets-list").replaceChildren(
    ...secrets.map((s) =>
      removable(s.name, "", async () => {
        if (!(await confirmed(`Remove the secret ${s.name}?`, `Remove ${s.name}`))) return;
        try {
          await call("DELETE", "/system/secrets", { json: { name: s.name } });
          await showSecrets();
        } catch (error) {
          banner(problem(error));
        }
      }),
    ),
  );
}

async function createSecret(event) {
  event.preventDefault();
  const form = event.currentTarget;
  try {
    await call("POST", "/system/secrets", { json: { name: form.elements.name.value.trim(), value: form.elements.value.value } });
    say(form, `Created secret ${form.elements.name.value.trim()}.`);
    form.reset();
    await showSecrets();
  } catch (error) {
    say(form, `Not created: ${problem(error)}`, true);
  }
}

async function showVolumes() {
  const volumes = await call("GET", "/system/volumes");
  $("#volumes-list").replaceChildren(
    ...volumes.map((v) =>
      removable(v.name, `${v.type}${v.hostPath ? " " + v.hostPath : ""} · used by ${(v.functions || []).join(", ") || "none"}`, async () => {
        if (!(await confirmed(`Remove the volume ${v.name} and its data?`, `Remove ${v.name}`))) return;
        try {
          await call("DELETE", "/system/volumes", { json: { name: v.name } });
          await showVolumes();
        } catch (error) {
          banner(problem(error));
        }
      }),
    ),
  );
}

async function createVolume(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const spec = { name: form.elements.name.value.trim() };
  if (form.elements.hostPath.value.trim()) spec.hostPath = form.elements.hostPath.value.trim();
  try {
    await call("POST", "/system/volumes", { json: spec });
    say(form, `Created volume ${spec.name}.`);
    form.reset();
    await showVolumes();
  } catch (error) {
    say(form, `Not created: ${problem(error)}`, true);
  }
}

// -- wiring ------------------------------------------------------------------------------------------------

$("#refresh-functions").addEventListener("click", () => showFunctions().catch((e) => banner(problem(e))));
$("#deploy-image").addEventListener("submit", deployImage);
$("#deploy-code").addEventListener("submit", deployCode);
$("#invoke-form").addEventListener("submit", invoke);
$("#scale-form").addEventListener("submit", scale);
$("#logs-toggle").addEventListener("click", toggleLogs);
$("#logs-clear").addEventListener("click", () => ($("#logs-output").textContent = ""));
$("#remove-button").addEventListener("click", remove);
$("#secret-form").addEventListener("submit", createSecret);
$("#volume-form").addEventListener("submit", createVolume);
window.addEventListener("hashchange", route);
route();
