// Several photos at once: one batch request, a row per photo with its own progress, one ZIP.
import { api, withKey } from "./api.js";
import { stageText } from "./jobs.js";

const $ = (id) => document.getElementById(id);
const ENDS = { complete: "Done", failed: "Failed", cancelled: "Cancelled" };

export function sendBatch(tool, files, settings) {
  const body = new FormData();
  for (const file of files) body.append("file", file, file.name);
  body.append("settings", JSON.stringify(settings));
  return api(`/api/v1/batches/${tool}`, { method: "POST", body });
}

// Follow a batch: each job's events (tagged with its jobId) move its row; `batch` events carry the
// totals, and the last one ("done") ends the stream. EventSource reconnects with Last-Event-ID.
export function followBatch({ batchId, jobIds }, names, { open, ended }) {
  const rows = new Map(jobIds.map((jobId, i) => [jobId, row(names[i] || jobId)]));
  $("batch-rows").replaceChildren(...[...rows.values()].map((r) => r.li));
  $("batch-zip").hidden = true;
  $("batch-cancel").disabled = false;
  $("batch-totals").textContent = `${jobIds.length} photos waiting…`;
  $("batch").hidden = false;
  const source = new EventSource(withKey(`/api/v1/batches/${batchId}/progress`));
  source.addEventListener("progress", (event) => {
    const data = JSON.parse(event.data);
    const r = rows.get(data.jobId);
    if (r) { r.bar.value = data.percent; r.stage.textContent = stageText(data); }
  });
  for (const kind of Object.keys(ENDS)) {
    source.addEventListener(kind, (event) => {
      const { jobId } = JSON.parse(event.data);
      finish(jobId, rows.get(jobId), kind, open);
    });
  }
  source.addEventListener("batch", (event) => {
    const data = JSON.parse(event.data);
    const { complete, failed, cancelled } = data.counts;
    $("batch-totals").textContent = `${complete + failed + cancelled} of ${data.total} finished: ` +
      `${complete} done, ${failed} failed, ${cancelled} cancelled`;
    if (data.status !== "done") return;
    source.close();
    $("batch-cancel").disabled = true;
    if (complete > 0) {
      $("batch-zip").href = withKey(`/api/v1/batches/${batchId}/download`);
      $("batch-zip").hidden = false;
    }
    ended();
  });
  $("batch-cancel").onclick = async () => {
    $("batch-cancel").disabled = true;
    await api(`/api/v1/batches/${batchId}`, { method: "DELETE" });
  };
  return source;
}

function row(name) {
  const li = document.createElement("li");
  const label = document.createElement("span");
  label.className = "batch-name";
  label.textContent = name;
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute("aria-label", `Progress of ${name}`);
  const stage = document.createElement("span");
  stage.className = "batch-stage";
  stage.setAttribute("aria-live", "polite");
  stage.textContent = "Waiting…";
  li.append(label, bar, stage);
  return { li, bar, stage };
}

function finish(jobId, r, kind, open) {
  if (!r || r.li.dataset.state) return;
  r.li.dataset.state = kind;
  r.stage.textContent = ENDS[kind];
  if (kind === "complete") r.bar.value = 100;
  const view = document.createElement("button");
  view.type = "button";
  view.textContent = kind === "complete" ? "View" : "Details";
  view.setAttribute("aria-label", `${view.textContent}: ${r.li.querySelector(".batch-name").textContent}`);
  view.onclick = () => open(jobId);
  r.li.append(view);
}
