// OTA uploads from the console: shipper's chunked-upload API, the protocol shippy speaks
// (docs/ota.md). PUT the first chunk (with the file name) to start, PUT the next ones with
// Content-Range at the offset the server acknowledged, POST the SHA-256 to finish. The upload's
// id, file name and size stay in localStorage, so after a reload (or a lost connection) the page
// asks the server how much it has, as shippy does, and continues from there.
"use strict";

// -- SHA-256, fed as the chunks go (crypto.subtle hashes only whole buffers, and only on https)
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

class Sha256 {
  constructor() {
    this.h = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    this.w = new Uint32Array(64);
    this.tail = new Uint8Array(64);
    this.tailLength = 0;
    this.length = 0; // bytes hashed so far
  }

  update(data) {
    let i = 0;
    this.length += data.length;
    if (this.tailLength) {
      const take = Math.min(64 - this.tailLength, data.length);
      this.tail.set(data.subarray(0, take), this.tailLength);
      this.tailLength += take;
      i = take;
      if (this.tailLength < 64) return;
      this.block(this.tail, 0);
      this.tailLength = 0;
    }
    for (; i + 64 <= data.length; i += 64) this.block(data, i);
    if (i < data.length) {
      this.tail.set(data.subarray(i), 0);
      this.tailLength = data.length - i;
    }
  }

  block(d, at) {
    const w = this.w;
    const ror = (x, n) => (x >>> n) | (x << (32 - n));
    for (let t = 0; t < 16; t++) {
      const j = at + 4 * t;
      w[t] = (d[j] << 24) | (d[j + 1] << 16) | (d[j + 2] << 8) | d[j + 3];
    }
    for (let t = 16; t < 64; t++) {
      const x = w[t - 15], y = w[t - 2];
      w[t] = w[t - 16] + (ror(x, 7) ^ ror(x, 18) ^ (x >>> 3)) + w[t - 7] + (ror(y, 17) ^ ror(y, 19) ^ (y >>> 10));
    }
    let [a, b, c, e0, e, f, g, h] = this.h;
    for (let t = 0; t < 64; t++) {
      const t1 = (h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t]) >>> 0;
      const t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      h = g; g = f; f = e; e = (e0 + t1) >>> 0; e0 = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    const s = this.h;
    s[0] += a; s[1] += b; s[2] += c; s[3] += e0; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
  }

  hex() {
    const bits = this.length * 8;
    const pad = new Uint8Array(((this.tailLength < 56 ? 56 : 120) - this.tailLength) + 8);
    pad[0] = 0x80;
    const view = new DataView(pad.buffer);
    view.setUint32(pad.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(pad.length - 4, bits >>> 0);
    const length = this.length;
    this.update(pad);
    this.length = length;
    return Array.from(this.h, (x) => x.toString(16).padStart(8, "0")).join("");
  }
}

// -- the upload -----------------------------------------------------------------------------------
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const bytes = (n) => `${Number(n).toLocaleString("en")} bytes`;

class ApiFailure extends Error {
  constructor(status, body) {
    const detail = body && (body.message || body.detail);
    const text = typeof detail === "string" ? detail : detail ? JSON.stringify(detail) : `HTTP ${status}`;
    super(text);
    this.status = status;
    this.body = body || {};
  }
}

// A 401 of the token check (DRF's {"detail"}), not shipper's refusal of a device ({"error"}).
const tokenEnded = (error) => error instanceof ApiFailure && error.status === 401 && !error.body.error;

function setUp(root) {
  const api = root.dataset.api;
  const key = `depot-console-ota-upload:${root.dataset.user}`;
  const ui = root.querySelector("[data-upload-ui]");
  const input = root.querySelector("#ota-file");
  const start = root.querySelector("[data-upload-start]");
  const pause = root.querySelector("[data-upload-pause]");
  const progress = root.querySelector("progress");
  const status = root.querySelector("[data-upload-status]");
  const resumeBox = root.querySelector("[data-resume]");
  const resumeText = root.querySelector("[data-resume-text]");
  const discard = root.querySelector("[data-upload-discard]");
  root.querySelector("[data-needs-script]").hidden = true;
  ui.hidden = false;

  let running = false;
  let pauseWanted = false;

  const saved = () => {
    try {
      const state = JSON.parse(localStorage.getItem(key) || "null");
      return state && typeof state.id === "string" && typeof state.name === "string" ? state : null;
    } catch (error) {
      return null;
    }
  };
  const save = (state) => localStorage.setItem(key, JSON.stringify(state));
  const forget = () => localStorage.removeItem(key);
  const say = (text, bad = false) => {
    status.textContent = text;
    status.classList.toggle("error", bad);
  };
  const show = (done, total) => {
    progress.max = Math.max(total, 1);
    progress.value = done;
    progress.setAttribute("aria-valuetext", `${Math.floor((100 * done) / Math.max(total, 1))}%`);
  };

  const offerResume = () => {
    const state = saved();
    resumeBox.hidden = !state;
    start.textContent = state ? "Resume" : "Upload";
    if (state) {
      resumeText.textContent =
        `An upload of ${state.name} stopped at ${bytes(state.offset || 0)} of ${bytes(state.size)}. ` +
        "Choose the same file and press Resume to continue it, or discard it.";
      show(state.offset || 0, state.size);
    }
  };

  async function call(method, url, body, headers = {}) {
    for (;;) {
      const response = await fetch(url, {
        method,
        body,
        headers: { Authorization: `Token ${root.dataset.token}`, ...headers },
        credentials: "omit",
        cache: "no-store",
      });
      let data = null;
      try {
        data = await response.json();
      } catch (error) {
        data = null;
      }
      if (response.status === 429) { // the API's rate: wait as it says, as shippy does
        const wait = Number(response.headers.get("Retry-After") || "1");
        say(`The server asks to wait ${wait} s…`);
        await sleep(Math.min(Math.max(wait, 1), 60) * 1000);
        continue;
      }
      if (!response.ok) throw new ApiFailure(response.status, data);
      return data;
    }
  }

  async function hashUpTo(file, hasher, offset, chunk) {
    // What the server already has, hashed from the file (after a reload, or a rewind).
    let fresh = hasher;
    if (fresh.length > offset) fresh = new Sha256();
    while (fresh.length < offset) {
      const end = Math.min(fresh.length + chunk, offset);
      fresh.update(new Uint8Array(await file.slice(fresh.length, end).arrayBuffer()));
      say(`Checking the ${bytes(offset)} already sent: ${Math.floor((100 * end) / offset)}%`);
    }
    return fresh;
  }

  function chunkForm(blob, name, first) {
    const form = new FormData();
    if (first) form.append("filename", name);
    form.append("file", blob, name);
    return form;
  }

  async function run(file, state) {
    const chunk = Math.max(1024, Number(root.dataset.chunkSize) || 4194304);
    const size = file.size;
    let hasher = new Sha256();
    let offset = 0;
    if (state) {
      const row = await call("GET", `${api}${state.id}/`);
      if (row.status !== 1) throw new ApiFailure(400, { detail: "The server finished this upload already." });
      offset = row.offset;
    } else {
      const dup = await call("POST", "/api/v1/maintainers/build/duplicate_check/",
        JSON.stringify({ file_name: file.name }), { "Content-Type": "application/json" });
      if (dup.exists) throw new ApiFailure(400, { detail: `${file.name} is in the store already.` });
      const end = Math.min(chunk, size);
      const row = await call("PUT", api, chunkForm(file.slice(0, end), file.name, true),
        { "Content-Range": `bytes 0-${end - 1}/${size}` });
      state = { id: row.id, name: file.name, size, offset: row.offset };
      save(state);
      hasher.update(new Uint8Array(await file.slice(0, row.offset).arrayBuffer()));
      offset = row.offset;
    }
    for (;;) {
      hasher = await hashUpTo(file, hasher, offset, chunk);
      show(offset, size);
      save({ ...state, offset });
      if (offset >= size) break;
      if (pauseWanted) {
        say(`Paused at ${bytes(offset)} of ${bytes(size)}.`);
        return "paused";
      }
      say(`Uploading ${file.name}: ${bytes(offset)} of ${bytes(size)}`);
      const end = Math.min(offset + chunk, size);
      const data = new Uint8Array(await file.slice(offset, end).arrayBuffer());
      let row;
      try {
        row = await call("PUT", `${api}${state.id}/`, chunkForm(new Blob([data]), file.name, false),
          { "Content-Range": `bytes ${offset}-${end - 1}/${size}` });
      } catch (error) {
        if (error instanceof ApiFailure && Number.isInteger(error.body.expected_offset)) {
          offset = error.body.expected_offset; // the server has another offset: go on from it
          continue;
        }
        throw error;
      }
      if (row.offset === end) hasher.update(data);
      offset = row.offset;
    }
    say("Checking and publishing the build…");
    try {
      const done = await call("POST", `${api}${state.id}/`, JSON.stringify({ sha256: hasher.hex() }),
        { "Content-Type": "application/json" });
      forget();
      show(size, size);
      say(done.message || "Uploaded.");
      window.location.assign(`/console/ota?uploaded=${encodeURIComponent(done.build_id)}`);
      return "done";
    } catch (error) {
      if (error instanceof ApiFailure && error.status < 500 && !tokenEnded(error)) forget(); // refused: dropped
      throw error;
    }
  }

  start.addEventListener("click", async () => {
    if (running) return;
    const file = input.files && input.files[0];
    const state = saved();
    if (!file) {
      say(state ? `Choose ${state.name} to resume its upload.` : "Choose a build file first.", true);
      input.focus();
      return;
    }
    if (state && (file.name !== state.name || file.size !== state.size)) {
      say(`This is not the file of the interrupted upload (${state.name}, ${bytes(state.size)}): ` +
        "choose that file, or discard the interrupted upload.", true);
      return;
    }
    if (file.size === 0) {
      say("The file is empty.", true);
      return;
    }
    running = true;
    pauseWanted = false;
    start.disabled = true;
    input.disabled = true;
    discard.disabled = true;
    pause.hidden = false;
    pause.disabled = false;
    try {
      await run(file, state);
    } catch (error) {
      if (tokenEnded(error)) {
        say("The page's upload permission ended: reload the page and resume.", true);
      } else if (error instanceof ApiFailure && error.status === 404 && state) {
        forget();
        say("The server no longer has this upload (it expired or failed): start it again.", true);
      } else if (error instanceof ApiFailure) {
        say(`Not uploaded: ${error.message}`, true);
      } else {
        say(`The connection failed (${error.message}): press Resume to continue.`, true);
      }
    } finally {
      running = false;
      start.disabled = false;
      input.disabled = false;
      discard.disabled = false;
      pause.hidden = true;
      offerResume();
    }
  });

  pause.addEventListener("click", () => {
    pauseWanted = true;
    pause.disabled = true;
    say("Pausing after this chunk…");
  });

  discard.addEventListener("click", () => {
    forget(); // the server drops an unfinished upload after a day
    show(0, 1);
    say("Discarded.");
    offerResume();
  });

  offerResume();
}

if (typeof document !== "undefined") {
  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("upload");
    if (root && root.dataset.api) setUp(root);
  });
}

// For tests under Node (module.exports is absent in the browser).
if (typeof module !== "undefined") module.exports = { Sha256 };
