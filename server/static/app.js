// The page controller: choose a photo and a tool, submit, follow progress, show the result.
import { api, megabytes, saveApiKey, withKey } from "./api.js";
import { followBatch, sendBatch } from "./batch.js";
import { install, renderBundles } from "./bundles.js";
import { showComparison } from "./compare.js";
import { explain } from "./errors.js";
import { readSettings, renderOptions } from "./form.js";
import { follow, recentJobs, refreshStates, remember, stageText } from "./jobs.js";
import { Corrections } from "./mask.js";

const $ = (id) => document.getElementById(id);
const state = { tools: new Map(), file: null, fileUrl: null, fileJobId: null, jobId: null, source: null,
                corrections: null, files: [], batchSource: null };
const MASK_TOOL = "restore-photo"; // the tool that takes a painted mask

async function init() {
  setupTabs();
  setupDrop();
  $("job-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  $("tool").addEventListener("change", selectTool);
  state.corrections = new Corrections({ onRun: runAgainWithMask, onError: showError });
  try {
    const { tools } = await api("/api/v1/tools");
    for (const tool of tools) {
      state.tools.set(tool.name, tool);
      $("tool").append(new Option(tool.name, tool.name));
    }
    selectTool();
  } catch (problem) {
    showError(problem);
  }
  renderRecent(await refreshStates());
}

function setupTabs() {
  for (const [tab, view] of [["tab-restore", "view-restore"], ["tab-bundles", "view-bundles"]]) {
    $(tab).addEventListener("click", () => {
      document.querySelectorAll(".tab").forEach((t) => t.setAttribute("aria-selected", String(t.id === tab)));
      $("view-restore").hidden = view !== "view-restore";
      $("view-bundles").hidden = view !== "view-bundles";
      if (view === "view-bundles") renderBundles($("bundles"), () => {}).catch(showError);
    });
  }
}

function setupDrop() {
  const drop = $("drop");
  const input = $("file");
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  // Cleared once read: the next choice replaces this one instead of adding to it.
  input.addEventListener("change", () => { chooseFiles(input.files); input.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); chooseFiles(e.dataTransfer.files); });
}

// One photo: a job of its own; several: one batch.
function chooseFiles(list) {
  const files = [...list];
  state.files = files.length > 1 ? files : [];
  if (files.length <= 1) return chooseFile(files[0]);
  state.file = null;
  $("thumb").hidden = true;
  const size = files.reduce((sum, f) => sum + f.size, 0);
  $("file-name").textContent = `${files.length} photos (${megabytes(size)}): ${files.map((f) => f.name).join(", ")}`;
  $("submit").disabled = false;
}

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  if (state.fileUrl) URL.revokeObjectURL(state.fileUrl);
  state.fileUrl = URL.createObjectURL(file);
  state.fileJobId = null; // the old picture is gone: earlier jobs compare against their preview
  const thumb = $("thumb");
  thumb.hidden = false;
  thumb.alt = `Thumbnail of ${file.name}`;
  thumb.onerror = () => { thumb.hidden = true; }; // HEIC, RAW, PSD: the browser cannot show these
  thumb.src = state.fileUrl;
  $("file-name").textContent = `${file.name} (${megabytes(file.size)})`;
  $("submit").disabled = false;
}

function selectTool() {
  const tool = state.tools.get($("tool").value);
  if (!tool) return;
  $("tool-summary").textContent = tool.summary;
  renderOptions($("options"), tool);
}

async function submit(event) {
  event.preventDefault();
  const tool = state.tools.get($("tool").value);
  if (state.files.length > 1) return sendAll(tool, readSettings($("options"), tool));
  if (!state.file) return;
  await send(tool, readSettings($("options"), tool), null);
}

async function sendAll(tool, settings) {
  hideError();
  const files = state.files;
  $("submit").disabled = true;
  try {
    const batch = await sendBatch(tool.name, files, settings);
    batch.jobIds.forEach((jobId, i) => remember({ jobId, tool: tool.name, name: files[i].name, createdAt: Date.now(),
                                                   state: "queued" }));
    renderRecent(recentJobs());
    $("job").hidden = true;
    $("result").hidden = true;
    if (state.batchSource) state.batchSource.close();
    state.batchSource = followBatch(batch, files.map((f) => f.name), {
      open: reopen, ended: async () => renderRecent(await refreshStates()) });
    $("batch").scrollIntoView({ block: "start" });
  } catch (problem) {
    showError(problem);
  } finally {
    $("submit").disabled = false;
  }
}

// The chosen photo to `tool`, with a painted `mask` (a PNG blob) when there is one.
async function send(tool, settings, mask) {
  hideError();
  const body = new FormData();
  body.append("file", state.file, state.file.name);
  body.append("settings", JSON.stringify(settings));
  if (mask) body.append("mask", mask, "mask.png");
  $("submit").disabled = true;
  try {
    const { jobId } = await api(`/api/v1/tools/${tool.name}`, { method: "POST", body });
    state.fileJobId = jobId;
    const name = mask ? `${state.file.name} (with your mask)` : state.file.name;
    remember({ jobId, tool: tool.name, name, createdAt: Date.now(), state: "queued" });
    renderRecent(recentJobs());
    watch(jobId);
  } catch (problem) {
    showError(problem);
  } finally {
    $("submit").disabled = false;
  }
}

// "Run again with this mask": the same photo to restore-photo, with the painted mask.
async function runAgainWithMask(mask) {
  const tool = state.tools.get(MASK_TOOL);
  // The options shown are restore-photo's unless the person switched tools since.
  await send(tool, $("tool").value === MASK_TOOL ? readSettings($("options"), tool) : {}, mask);
}

function watch(jobId) {
  if (state.source) state.source.close();
  state.jobId = jobId;
  $("job").hidden = false;
  $("result").hidden = true;
  $("cancel").disabled = false;
  $("bar").value = 0;
  $("stage").textContent = "Waiting…";
  $("job").scrollIntoView({ block: "start" });
  state.source = follow(jobId, {
    progress: (data) => { $("bar").value = data.percent; $("stage").textContent = stageText(data); },
    blip: () => { $("stage").textContent = "Connection lost — reconnecting…"; },
    done: (kind, data) => finished(jobId, kind, data),
  });
}

async function finished(jobId, kind, data) {
  $("cancel").disabled = true;
  $("bar").value = kind === "complete" ? 100 : $("bar").value;
  $("stage").textContent = kind === "complete" ? "Done" : kind === "cancelled" ? "Cancelled" : "Failed";
  remember({ ...(recentJobs().find((j) => j.jobId === jobId) || { jobId }), state: kind });
  renderRecent(recentJobs());
  if (kind === "complete") showResult(data.result);
  if (kind === "failed") showError({ code: data.error.code, message: data.error.message, details: data.error });
}

async function cancel() {
  if (!state.jobId) return;
  $("cancel").disabled = true;
  try { await api(`/api/v1/jobs/${state.jobId}`, { method: "DELETE" }); } catch (problem) { showError(problem); }
}

function showResult(result) {
  $("result").hidden = false;
  $("result").scrollIntoView({ block: "start" });
  // "Before" is the file chosen here only for the job made from it (not for a reopened one).
  const before = result.jobId === state.fileJobId ? state.fileUrl : withKey(result.previewUrl);
  showComparison($("compare"), before, withKey(result.previewUrl));
  // Painting needs the photo itself: only for the job made from the file chosen here.
  state.corrections.show(result, result.jobId === state.fileJobId ? state.fileUrl : null);
  const rows = [
    ["Size", `${result.width} × ${result.height} px, ${megabytes(result.processedSize)} (was ${megabytes(result.originalSize)})`],
    ["Steps run", result.steps.join(", ") || "none"],
    ["Skipped", (result.skipped || []).map((s) => `${s.step}: ${s.reason}`).join("; ") || "none"],
  ];
  if (result.scratchCoverage !== undefined && result.scratchCoverage !== null) rows.push(["Scratch coverage", `${result.scratchCoverage}%`]);
  if (result.facesEnhanced !== undefined) rows.push(["Faces enhanced", String(result.facesEnhanced)]);
  if (result.isGrayscale !== undefined) rows.push(["Black and white", result.isGrayscale ? "yes" : "no"]);
  rows.push(["Timings", Object.entries(result.timings).map(([k, v]) => `${k} ${v} ms`).join(", ")]);
  $("numbers").replaceChildren(...rows.flatMap(([term, value]) => {
    const dt = document.createElement("dt"); dt.textContent = term;
    const dd = document.createElement("dd"); dd.textContent = value;
    return [dt, dd];
  }));
  const files = result.results.map((item) => [item.downloadUrl, `Download ${item.resultType.replace("_", " ")}`]);
  if (result.damageMaskUrl) files.push([result.damageMaskUrl, "Download damage mask"]);
  $("downloads").replaceChildren(...files.map(([url, label]) => {
    const a = document.createElement("a");
    a.href = withKey(url);
    a.download = url.split("/").pop();
    a.textContent = label;
    return a;
  }));
}

function showError(problem) {
  const box = $("error");
  const { text, bundle } = explain(problem);
  const message = document.createElement("p");
  message.textContent = text;
  box.replaceChildren(message);
  if (problem.code === "UNAUTHORIZED") box.append(keyForm());
  if (bundle) {
    const bar = document.createElement("progress");
    bar.max = 100; bar.hidden = true;
    bar.setAttribute("aria-label", `Installing ${bundle}`);
    const status = document.createElement("p");
    status.setAttribute("aria-live", "polite");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `Install ${bundle}`;
    button.onclick = () => { button.disabled = true; install(bundle, bar, status, () => {}); };
    box.append(button, bar, status);
  }
  box.hidden = false;
  box.scrollIntoView({ block: "center" });
  box.focus();
}

function keyForm() {
  const form = document.createElement("form");
  const label = document.createElement("label");
  label.htmlFor = "api-key";
  label.textContent = "API key";
  const input = document.createElement("input");
  input.id = "api-key";
  input.type = "password";
  input.autocomplete = "off";
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = "Save key";
  form.append(label, input, save);
  form.onsubmit = (e) => { e.preventDefault(); saveApiKey(input.value); location.reload(); };
  return form;
}

function hideError() { $("error").hidden = true; }

function renderRecent(jobs) {
  $("recent").replaceChildren(...jobs.map((job) => {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = `#${job.jobId}`;
    link.textContent = `${job.name || job.jobId} — ${job.tool}`;
    link.onclick = (e) => { e.preventDefault(); reopen(job.jobId); };
    const badge = document.createElement("span");
    badge.className = `state ${job.state}`;
    badge.textContent = ` ${job.state}`;
    li.append(link, badge);
    return li;
  }));
  if (!jobs.length) $("recent").innerHTML = '<li class="muted">No jobs yet.</li>';
}

async function reopen(jobId) {
  try {
    const job = await api(`/api/v1/jobs/${jobId}`);
    if (job.status === "queued" || job.status === "running") watch(jobId);
    else if (job.status === "complete") { state.jobId = jobId; showResult(job.result); }
    else showError({ code: job.error?.code || job.status, message: job.error?.message || `This job is ${job.status}.` });
  } catch (problem) {
    showError(problem);
  }
}

init();
