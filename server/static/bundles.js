// The bundles view: status, sizes, install with a progress bar, remove.
import { api, megabytes } from "./api.js";
import { follow, stageText } from "./jobs.js";

export async function renderBundles(list, onChange) {
  const { bundles } = await api("/api/v1/bundles");
  list.replaceChildren(...bundles.map((bundle) => bundleItem(bundle, () => renderBundles(list, onChange).then(onChange))));
}

function bundleItem(bundle, refresh) {
  const li = document.createElement("li");
  li.dataset.bundle = bundle.name;
  const head = document.createElement("div");
  head.className = "bundle-head";
  const title = document.createElement("strong");
  title.textContent = `${bundle.name} — ${megabytes(bundle.size)}`;
  const state = document.createElement("span");
  state.className = `state ${bundle.status}`;
  state.textContent = bundle.status.replace("_", " ");
  const actions = document.createElement("div");
  actions.className = "bundle-actions";
  head.append(title, state, actions);
  const text = document.createElement("p");
  text.className = "muted";
  text.textContent = `${bundle.description} Enables: ${bundle.tools.join(", ")}.` +
    (bundle.installedModels.length ? ` Installed: ${bundle.installedModels.join(", ")}.` : "");
  const bar = document.createElement("progress");
  bar.max = 100; bar.hidden = true;
  bar.setAttribute("aria-label", `Installing ${bundle.name}`);
  const status = document.createElement("p");
  status.setAttribute("aria-live", "polite");
  li.append(head, text, bar, status);
  if (bundle.status !== "installed" || bundle.missingModels.length) {
    actions.append(button(`Install ${bundle.name}`, "Install", () => install(bundle.name, bar, status, refresh)));
  }
  if (bundle.status === "installed" || bundle.status === "broken") {
    actions.append(button(`Remove ${bundle.name}`, "Remove", () => remove(bundle.name, status, refresh)));
  }
  return li;
}

function button(label, text, onClick) {
  const el = document.createElement("button");
  el.type = "button";
  el.textContent = text;
  el.setAttribute("aria-label", label);
  el.onclick = onClick;
  return el;
}

export async function install(name, bar, status, refresh) {
  try {
    const { jobId } = await api(`/api/v1/bundles/${name}/install`, { method: "POST" });
    bar.hidden = false;
    follow(jobId, {
      progress: (data) => { bar.value = data.percent; status.textContent = stageText(data); },
      done: (kind, data) => {
        status.textContent = kind === "complete" ? `${name} installed.` : `Install failed: ${data.error?.message || kind}`;
        bar.hidden = true;
        refresh();
      },
    });
  } catch (problem) {
    status.textContent = problem.message;
  }
}

async function remove(name, status, refresh) {
  try {
    await api(`/api/v1/bundles/${name}`, { method: "DELETE" });
    refresh();
  } catch (problem) {
    status.textContent = problem.message;
  }
}
