// Builds labelled controls from a tool's JSON schema, and reads them back as settings.
const LABELS = { remove_bg: "Remove background", remove_bg_quality: "Background removal quality" };

function labelFor(name) {
  if (LABELS[name]) return LABELS[name];
  const words = name.replace(/([A-Z])/g, " $1").replace(/_/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1).toLowerCase();
}

function control(name, spec) {
  const id = `opt-${name}`;
  const wrap = document.createElement("div");
  const hint = document.createElement("p");
  hint.className = "hint";
  hint.id = `${id}-hint`;
  hint.textContent = spec.description || "";
  let input;
  if (spec.type === "boolean") {
    const label = document.createElement("label");
    label.className = "check";
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = Boolean(spec.default);
    label.append(input, labelFor(name));
    wrap.append(label);
  } else {
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = labelFor(name);
    input = spec.enum ? select(spec) : number(spec);
    wrap.append(label, input);
  }
  input.id = id;
  input.name = name;
  input.setAttribute("aria-describedby", hint.id);
  wrap.append(hint);
  return wrap;
}

function select(spec) {
  const el = document.createElement("select");
  if (spec.default === undefined) el.append(new Option("Default", ""));
  for (const value of spec.enum) el.append(new Option(String(value), String(value)));
  if (spec.default !== undefined) el.value = String(spec.default);
  return el;
}

function number(spec) {
  const el = document.createElement("input");
  el.type = spec.type === "string" ? "text" : "number";
  if (spec.minimum !== undefined) el.min = spec.minimum;
  if (spec.maximum !== undefined) el.max = spec.maximum;
  if (spec.type === "number") el.step = spec.maximum <= 1 ? "0.05" : "1";
  if (spec.default !== undefined) el.value = spec.default;
  else el.placeholder = "default";
  return el;
}

export function renderOptions(fieldset, tool) {
  fieldset.querySelectorAll(":scope > div").forEach((el) => el.remove());
  for (const [name, spec] of Object.entries(tool.parameters.properties)) fieldset.append(control(name, spec));
}

// Only values the person changed are sent, so the server's defaults (and bundle rules) apply.
export function readSettings(fieldset, tool) {
  const settings = {};
  for (const [name, spec] of Object.entries(tool.parameters.properties)) {
    const el = fieldset.querySelector(`[name="${name}"]`);
    let value;
    if (spec.type === "boolean") value = el.checked;
    else if (el.value === "") continue;
    else if (spec.type === "number" || spec.type === "integer") value = Number(el.value);
    else value = spec.enum && spec.enum.every((v) => typeof v === "number") ? Number(el.value) : el.value;
    if (value !== spec.default) settings[name] = value;
  }
  return settings;
}
