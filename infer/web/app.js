// The pages of pneumo serve: plain JavaScript talking to the REST API (see /v1/model).
"use strict";

const pneumo = (() => {
  const $ = (id) => document.getElementById(id);

  // The bearer token, when the server wants one, lives in this tab only.
  function headers() {
    const token = sessionStorage.getItem("pneumo-token");
    return token ? { Authorization: "Bearer " + token } : {};
  }

  function askForToken(retry) {
    $("token-panel").hidden = false;
    $("token-save").onclick = () => {
      sessionStorage.setItem("pneumo-token", $("token").value);
      $("token-panel").hidden = true;
      retry();
    };
  }

  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
    if (response.status === 401) {
      const error = new Error("this server needs an access token");
      error.unauthorised = true;
      throw error;
    }
    return response;
  }

  async function json(response) {
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
    return body;
  }

  const percent = (p) => (p == null ? "not scored" : (100 * p).toFixed(1) + " %");
  const captions = {
    overlay: "Heat map: pixel probability above 0.1. Yellow outline: the predicted pneumothorax.",
    explanation: "Heat map: where the model looked for its answer (Grad-CAM of the image-level output).",
  };
  function area(r) {
    if (r.accepted === false) return "not measured";
    if (!r.area_px) return "none";
    const mm2 = r.area_mm2 == null ? "" : " (" + (r.area_mm2 / 100).toFixed(1) + " cm\u00b2)";
    return r.area_px.toLocaleString("en") + " pixels" + mm2;
  }
  function decision(element, r) {
    element.textContent = r.decision;
    element.className = r.accepted === false ? "refused" : r.positive ? "positive" : "negative";
  }

  async function showModel() {
    try {
      const m = await json(await api("/v1/model"));
      const members = m.members.map((x) => `${x.model}/${x.encoder} (${x.task}, ${x.input_size} px)`).join(", ");
      $("model").textContent = `${members}; threshold ${m.postprocess.threshold}, ` +
        `gate ${m.postprocess.classifier_threshold}, minimum area ${m.postprocess.min_area} px; on ${m.device}`;
    } catch (e) {
      if (e.unauthorised) return askForToken(showModel);
      $("model").textContent = "Could not read the model: " + e.message;
    }
  }

  // The overlay, and with an explanation a button switching between the two images.
  function showImages(r) {
    const refused = r.accepted === false;
    $("figure").hidden = refused;
    if (refused) return;
    const images = { overlay: "data:image/png;base64," + r.overlay_png };
    if (r.explanation_png) images.explanation = "data:image/png;base64," + r.explanation_png;
    let shown = "overlay";
    const show = (which) => {
      shown = which;
      $("overlay").src = images[which];
      $("caption").textContent = captions[which];
      $("toggle-explanation").textContent = which === "overlay" ? "Show the explanation" : "Show the prediction";
    };
    show("overlay");
    $("toggle-explanation").hidden = !images.explanation;
    $("toggle-explanation").onclick = () => show(shown === "overlay" ? "explanation" : "overlay");
  }

  async function predict(file) {
    $("status").className = "";
    $("status").textContent = "Predicting " + file.name + "\u2026";
    $("result").hidden = true;
    try {
      const response = await api("/v1/predict" + ($("explain").checked ? "?explain=true" : ""), {
        method: "POST",
        headers: { "Content-Type": file.type || "application/octet-stream" },
        body: file,
      });
      const r = await json(response);
      showImages(r);
      $("gate").textContent = r.gate;
      $("gate").className = r.accepted === false ? "refused" : "";
      decision($("decision"), r);
      $("probability").textContent = percent(r.probability) + (r.calibrated ? " (calibrated)" : "");
      $("area").textContent = area(r);
      $("size").textContent = r.width + " \u00d7 " + r.height;
      $("timing").textContent = Math.round(r.timing_ms.total) + " ms";
      $("result").hidden = false;
      $("status").textContent = "Result #" + r.id + " for " + file.name;
      document.body.dataset.state = "done";
    } catch (e) {
      if (e.unauthorised) return askForToken(() => predict(file));
      $("status").className = "error";
      $("status").textContent = "Could not predict " + file.name + ": " + e.message;
      document.body.dataset.state = "error";
    }
  }

  function startPredictPage() {
    showModel();
    $("file").addEventListener("change", () => {
      if ($("file").files.length) predict($("file").files[0]);
    });
    const drop = $("upload");
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer.files.length) predict(e.dataTransfer.files[0]);
    });
  }

  async function startResultsPage() {
    try {
      const { results } = await json(await api("/v1/results"));
      const body = document.querySelector("#results tbody");
      body.replaceChildren();
      for (const r of results) {
        const row = body.insertRow();
        const cells = [r.id, r.time.replace("T", " ").replace("Z", ""), "", percent(r.probability), area(r),
                       r.width + " \u00d7 " + r.height];
        for (const text of cells) row.insertCell().textContent = text;
        decision(row.cells[2], r);
        if (r.accepted === false) {  // refused by the input gate: nothing was drawn
          row.insertCell().textContent = r.gate;
          continue;
        }
        const img = document.createElement("img");
        img.alt = "overlay of result " + r.id;
        row.insertCell().appendChild(img);
        api(`/v1/results/${r.id}/overlay.png`).then((x) => x.ok ? x.blob() : null)
          .then((blob) => { if (blob) img.src = URL.createObjectURL(blob); });
      }
      $("results").hidden = results.length === 0;
      $("status").textContent = results.length ? results.length + " recent result(s), newest first."
                                                : "No results yet.";
      document.body.dataset.state = "done";
    } catch (e) {
      if (e.unauthorised) return askForToken(startResultsPage);
      $("status").className = "error";
      $("status").textContent = "Could not read the results: " + e.message;
    }
  }

  return { startPredictPage, startResultsPage };
})();
