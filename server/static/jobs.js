// Following a job over SSE, and the list of this browser's recent jobs (localStorage).
import { api, withKey } from "./api.js";

const KEY = "restora.recentJobs";
const KEEP = 20;

// The browser's EventSource reconnects by itself after a network blip and sends Last-Event-ID,
// so the server replays exactly what was missed. We close it at the terminal event.
export function follow(jobId, { progress, done, blip }) {
  const source = new EventSource(withKey(`/api/v1/jobs/${jobId}/progress`));
  source.addEventListener("progress", (event) => progress(JSON.parse(event.data)));
  for (const kind of ["complete", "failed", "cancelled"]) {
    source.addEventListener(kind, (event) => { source.close(); done(kind, JSON.parse(event.data)); });
  }
  source.onerror = () => { if (source.readyState !== EventSource.CLOSED && blip) blip(); };
  return source;
}

export function stageText(data) {
  if (data.phase === "queued" && data.queuePosition) return `Waiting in queue — position ${data.queuePosition}`;
  return data.stage || data.phase;
}

export function recentJobs() {
  try { return JSON.parse(localStorage.getItem(KEY)) || []; } catch { return []; }
}

export function remember(job) {
  const jobs = recentJobs().filter((j) => j.jobId !== job.jobId);
  jobs.unshift(job);
  localStorage.setItem(KEY, JSON.stringify(jobs.slice(0, KEEP)));
}

export async function refreshStates() {
  const jobs = recentJobs();
  await Promise.all(jobs.map(async (job) => {
    try { job.state = (await api(`/api/v1/jobs/${job.jobId}`)).status; } catch { job.state = "gone"; }
  }));
  localStorage.setItem(KEY, JSON.stringify(jobs));
  return jobs;
}
