// API errors as sentences for people, with what to do next.
import { megabytes } from "./api.js";

const ADVICE = {
  UNSUPPORTED_FORMAT: "Choose a photo file: JPEG, PNG, WebP, TIFF, HEIC, AVIF, camera RAW, PSD, EXR, HDR or TGA.",
  EMPTY_FILE: "The file is empty. Choose another photo.",
  UPLOAD_TOO_LARGE: "Choose a smaller file, or export the photo as JPEG first.",
  IMAGE_TOO_LARGE: "Resize the photo to fewer pixels and try again.",
  OUTPUT_TOO_LARGE: "Choose a smaller scale.",
  UNDECODABLE: "The file seems damaged or is not really an image. Try exporting it again.",
  INVALID_PARAMS: "Check the highlighted options.",
  MISSING_FILE: "Choose a photo first.",
  QUEUE_FULL: "The server is busy. Wait a little and start again.",
  SHUTTING_DOWN: "The server is restarting. Try again in a few seconds.",
  NETWORK: "Check that the server is running, then try again.",
  WORKER_CRASHED: "The photo may need more memory than this machine has. Try a smaller photo.",
  BUNDLE_BROKEN: "Open Model bundles and install the bundle again.",
  UNAUTHORIZED: "Enter an API key below (ask whoever runs this server; they create one with `restora keys create NAME`).",
};

// Returns {text, bundle} where bundle (when set) can be offered for installation.
export function explain(problem) {
  const d = problem.details || {};
  if (problem.code === "BUNDLE_NOT_INSTALLED" || problem.code === "MODEL_NOT_INSTALLED") {
    const size = d.sizeBytes ? ` (about ${megabytes(d.sizeBytes)})` : "";
    return { text: `This needs the “${d.bundle}” model bundle${size}, which is not installed.`, bundle: d.bundle };
  }
  let text = problem.message;
  if (d.fields) text += " " + d.fields.map((f) => `${f.field} ${f.message}.`).join(" ");
  const advice = ADVICE[problem.code];
  return { text: advice ? `${text} ${advice}` : text, bundle: null };
}
