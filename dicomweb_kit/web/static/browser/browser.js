// The study browser of dicomweb-kit: three hash-routed views (study list, study, image viewer)
// and an upload box, over the kit's own DICOMweb resources. The page is {root}/browse, so every
// relative URL here ("studies", "studies/1.2/series") resolves under the service root, whatever
// the mount prefix. Data from the server only ever reaches the page as text nodes or as
// attributes we build (textContent, setAttribute), never as HTML.
"use strict";

(() => {
  const PAGE_SIZE = 25;
  const DICOM_JSON = "application/dicom+json";
  // PS3.18 §8.3.5.1.4: window=center,width,function. Presets as common viewers name them.
  const PRESETS = [
    ["Default", null],
    ["Soft tissue", "40,400"],
    ["Lung", "-600,1500"],
    ["Bone", "300,1500"],
    ["Brain", "40,80"],
  ];
  // Attribute tags of the DICOM JSON model (PS3.18 Annex F).
  const T = {
    StudyInstanceUID: "0020000D",
    SeriesInstanceUID: "0020000E",
    SOPInstanceUID: "00080018",
    PatientName: "00100010",
    PatientID: "00100020",
    StudyDate: "00080020",
    StudyDescription: "00081030",
    AccessionNumber: "00080050",
    ModalitiesInStudy: "00080061",
    NumberOfStudyRelatedSeries: "00201206",
    NumberOfStudyRelatedInstances: "00201208",
    Modality: "00080060",
    SeriesNumber: "00200011",
    SeriesDescription: "0008103E",
    NumberOfSeriesRelatedInstances: "00201209",
    InstanceNumber: "00200013",
    NumberOfFrames: "00280008",
    Rows: "00280010",
    Columns: "00280011",
    FailedSOPSequence: "00081198",
    ReferencedSOPSequence: "00081199",
    ReferencedSOPInstanceUID: "00081155",
    FailureReason: "00081197",
    WarningReason: "00081196",
  };
  // PS3.18 Table I.2-2 and PS3.4 Annex B, plus the kit's own 0xC409 (README).
  const FAILURE_REASONS = {
    0x0110: "processing failure",
    0x0111: "duplicate SOP instance",
    0x0122: "SOP class not supported",
    0x0124: "not authorized",
    0xa700: "out of resources (too large)",
    0xa900: "data set does not match SOP class (UIDs missing or invalid)",
    0xc000: "cannot understand (not a DICOM file?)",
    0xc409: "study instance UID differs from the target study",
  };

  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const studyPath = (s) => `studies/${enc(s)}`;
  const seriesPath = (s, r) => `${studyPath(s)}/series/${enc(r)}`;
  const instancePath = (s, r, i) => `${seriesPath(s, r)}/instances/${enc(i)}`;

  // el("a", {href: "#", class: "x"}, "text", child): strings become text nodes.
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name === "className" ? "class" : name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== "") node.append(child);
    }
    return node;
  }

  const values = (ds, tag) => (ds && ds[tag] && ds[tag].Value) || [];
  const first = (ds, tag) => values(ds, tag)[0];
  const text = (ds, tag) => values(ds, tag).filter((v) => v !== null).join(", ");
  const number = (ds, tag) => {
    const n = Number(first(ds, tag));
    return Number.isFinite(n) ? n : null;
  };

  // PN "Family^Given^Middle^Prefix^Suffix" (PS3.5 §6.2.1) as "Family, Prefix Given Middle, Suffix".
  function personName(value) {
    if (!value) return "";
    const groups = typeof value === "string" ? { Alphabetic: value } : value;
    const format = (pn) => {
      const [family = "", given = "", middle = "", prefix = "", suffix = ""] = pn.split("^").map((s) => s.trim());
      const rest = [prefix, given, middle].filter(Boolean).join(" ");
      const name = family && rest ? `${family}, ${rest}` : family || rest;
      return suffix ? `${name}, ${suffix}` : name;
    };
    const main = format(groups.Alphabetic || groups.Ideographic || groups.Phonetic || "");
    const other = groups.Alphabetic && groups.Ideographic ? format(groups.Ideographic) : "";
    return other ? `${main} (${other})` : main;
  }

  const formatDate = (da) => (/^\d{8}$/.test(da || "") ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6)}` : da || "");

  async function problem(response) {
    const body = (await response.text()).trim();
    return `HTTP ${response.status}${body ? `: ${body.slice(0, 300)}` : ""}`;
  }

  // A QIDO-RS search (PS3.18 §10.6): the matches as DICOM JSON datasets.
  async function qido(path, params) {
    const query = params ? params.toString() : "";
    const response = await fetch(query ? `${path}?${query}` : path, { headers: { Accept: DICOM_JSON } });
    if (!response.ok) throw new Error(await problem(response));
    const body = await response.text(); // 204 from servers older than CP-2473
    return body ? JSON.parse(body) : [];
  }

  // Every match of a search, page after page (the server may cap a page, PS3.18 §8.3.4.4).
  async function qidoAll(path, params) {
    const found = [];
    for (;;) {
      const page = new URLSearchParams(params);
      page.set("offset", String(found.length));
      const rows = await qido(path, page);
      found.push(...rows);
      if (rows.length === 0 || found.length >= 100000) return found;
    }
  }

  function setStatus(node, message, kind) {
    node.textContent = message || "";
    node.className = `status${kind ? ` ${kind}` : ""}`;
  }

  function crumbs(...items) {
    $("crumbs").replaceChildren(
      ...items.map(([label, href], k) =>
        el("li", {}, href && k < items.length - 1 ? el("a", { href }, label) : el("span", { "aria-current": "page" }, label)),
      ),
    );
  }

  function show(id, title) {
    for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== id;
    document.title = `${title} · dicomweb-kit`;
  }

  // ---- study list ----------------------------------------------------------------------------

  const list = { params: new URLSearchParams(), offset: 0, loaded: false };

  function searchParams(form) {
    const params = new URLSearchParams();
    const name = form.PatientName.value.trim();
    // PS3.18 §8.3.4.1: "*" matches any characters; a bare name is taken as a prefix.
    if (name) params.set("PatientName", /[*?]/.test(name) ? name : `${name}*`);
    const id = form.PatientID.value.trim();
    if (id) params.set("PatientID", id);
    const from = form.from.value.replaceAll("-", "");
    const to = form.to.value.replaceAll("-", "");
    // PS3.4 §C.2.2.2.5: a date range is "from-to", open at either end.
    if (from || to) params.set("StudyDate", from && from === to ? from : `${from}-${to}`);
    const modality = form.ModalitiesInStudy.value.trim().toUpperCase();
    if (modality) params.set("ModalitiesInStudy", modality);
    if (name && form.fuzzy.checked) params.set("fuzzymatching", "true");
    return params;
  }

  async function loadStudies() {
    const status = $("list-status");
    const params = new URLSearchParams(list.params);
    params.set("includefield", "StudyDescription");
    params.set("limit", String(PAGE_SIZE + 1)); // one more than shown: is there a next page?
    params.set("offset", String(list.offset));
    setStatus(status, "Searching…", "busy");
    let rows;
    try {
      rows = await qido("studies", params);
    } catch (error) {
      $("studies").tBodies[0].replaceChildren();
      setStatus(status, `Search failed: ${error.message}`, "error");
      return;
    }
    const more = rows.length > PAGE_SIZE;
    rows = rows.slice(0, PAGE_SIZE);
    $("studies").tBodies[0].replaceChildren(...rows.map(studyRow));
    list.loaded = true;
    const filtered = [...list.params.keys()].length > 0;
    if (rows.length === 0) {
      setStatus(status, filtered ? "No studies match." : "No studies stored yet: upload some below.");
    } else {
      const last = list.offset + rows.length;
      setStatus(status, `Studies ${list.offset + 1}–${last}${more ? "" : ` of ${last}`}`);
    }
    $("prev").disabled = list.offset === 0;
    $("next").disabled = !more;
    $("page-info").textContent = rows.length ? `Page ${Math.floor(list.offset / PAGE_SIZE) + 1}` : "";
  }

  function studyRow(ds) {
    const uid = first(ds, T.StudyInstanceUID) || "";
    const href = `#/study/${enc(uid)}`;
    const name = personName(first(ds, T.PatientName)) || "(no name)";
    const row = el(
      "tr",
      { onclick: (event) => event.target.closest("a") || (location.hash = href) },
      el("th", { scope: "row" }, el("a", { href }, name)),
      el("td", {}, text(ds, T.PatientID)),
      el("td", { className: "nowrap" }, formatDate(first(ds, T.StudyDate))),
      el("td", {}, text(ds, T.StudyDescription)),
      el("td", {}, values(ds, T.ModalitiesInStudy).join(" ")),
      el("td", { className: "num" }, text(ds, T.NumberOfStudyRelatedSeries)),
      el("td", { className: "num" }, text(ds, T.NumberOfStudyRelatedInstances)),
    );
    return row;
  }

  function showList() {
    show("list-view", "Studies");
    crumbs(["Studies", null]);
    if (!list.loaded) loadStudies();
  }

  // ---- one study -----------------------------------------------------------------------------

  async function showStudy(study) {
    show("study-view", "Study");
    crumbs(["Studies", "#/"], ["Study", null]);
    const status = $("study-status");
    $("study-title").textContent = "Study";
    $("study-facts").replaceChildren();
    $("series").replaceChildren();
    $("study-zip").setAttribute("href", `${studyPath(study)}?accept=application/zip`);
    $("study-zip").setAttribute("download", `study-${study}.zip`);
    setStatus(status, "Loading…", "busy");
    let studies, series;
    try {
      [studies, series] = await Promise.all([
        qido("studies", new URLSearchParams({ StudyInstanceUID: study, includefield: "StudyDescription" })),
        qidoAll(`${studyPath(study)}/series`, new URLSearchParams({ includefield: "SeriesDescription" })),
      ]);
    } catch (error) {
      setStatus(status, `Could not load the study: ${error.message}`, "error");
      return;
    }
    const ds = studies[0];
    if (!ds) {
      setStatus(status, "This study is not stored (any more).", "error");
      return;
    }
    const name = personName(first(ds, T.PatientName)) || "(no name)";
    const description = text(ds, T.StudyDescription);
    $("study-title").textContent = description ? `${name} · ${description}` : name;
    document.title = `${name} · dicomweb-kit`;
    crumbs(["Studies", "#/"], [name, null]);
    $("study-facts").replaceChildren(
      ...fact("Patient ID", text(ds, T.PatientID)),
      ...fact("Date", formatDate(first(ds, T.StudyDate))),
      ...fact("Accession", text(ds, T.AccessionNumber)),
      ...fact("Modalities", values(ds, T.ModalitiesInStudy).join(" ")),
      ...fact("Instances", text(ds, T.NumberOfStudyRelatedInstances)),
    );
    series.sort((a, b) => (number(a, T.SeriesNumber) ?? 1e9) - (number(b, T.SeriesNumber) ?? 1e9));
    $("series").replaceChildren(...series.map((s) => seriesCard(study, s)));
    setStatus(status, `${series.length} series`);
  }

  function fact(label, value) {
    return value ? [el("span", { className: "fact" }, el("span", { className: "label" }, label), " ", value)] : [];
  }

  function seriesCard(study, ds) {
    const uid = first(ds, T.SeriesInstanceUID) || "";
    const seriesNumber = text(ds, T.SeriesNumber);
    const title = [seriesNumber && `Series ${seriesNumber}`, text(ds, T.SeriesDescription)].filter(Boolean).join(" · ");
    const count = number(ds, T.NumberOfSeriesRelatedInstances);
    const view = `#/view/${enc(study)}/${enc(uid)}`;
    const thumbnail = el("img", {
      className: "thumb",
      src: `${seriesPath(study, uid)}/thumbnail?viewport=160,160`,
      alt: `Thumbnail of ${title || "the series"}`,
      width: 160,
      height: 160,
      loading: "lazy",
    });
    thumbnail.addEventListener("error", () => thumbnail.replaceWith(el("span", { className: "thumb none" }, "No image")));
    return el(
      "li",
      { className: "card" },
      el("a", { href: view, className: "thumb-link", "aria-label": `View ${title || "series"}` }, thumbnail),
      el(
        "div",
        { className: "card-body" },
        el("h2", {}, el("a", { href: view }, title || "Series")),
        el("p", { className: "facts" }, [text(ds, T.Modality), count !== null && `${count} instance${count === 1 ? "" : "s"}`].filter(Boolean).join(" · ")),
        el(
          "p",
          { className: "card-actions" },
          el("a", { href: view, className: "button primary" }, "View"),
          el(
            "a",
            { href: `${seriesPath(study, uid)}?accept=application/zip`, className: "button", download: `series-${uid}.zip` },
            "Download zip",
          ),
        ),
      ),
    );
  }

  // ---- image viewer --------------------------------------------------------------------------

  const viewer = { key: "", study: "", series: "", instances: [], index: 0, frame: 1, window: null };

  function framesOf(ds) {
    return Math.max(1, number(ds, T.NumberOfFrames) || 1);
  }

  async function showViewer(study, series, instance, frame) {
    show("viewer-view", "Image");
    crumbs(["Studies", "#/"], ["Study", `#/study/${enc(study)}`], ["Image", null]);
    const status = $("viewer-status");
    if (viewer.key !== `${study}/${series}`) {
      viewer.instances = [];
      $("image").removeAttribute("src");
      setStatus(status, "Loading…", "busy");
      try {
        const fields = ["NumberOfFrames", "SeriesNumber", "SeriesDescription", "Modality"];
        const found = await qidoAll(`${seriesPath(study, series)}/instances`, new URLSearchParams(fields.map((f) => ["includefield", f])));
        found.sort((a, b) => (number(a, T.InstanceNumber) ?? 1e9) - (number(b, T.InstanceNumber) ?? 1e9));
        Object.assign(viewer, { key: `${study}/${series}`, study, series, instances: found });
      } catch (error) {
        setStatus(status, `Could not load the series: ${error.message}`, "error");
        return;
      }
      if (!viewer.instances.length) {
        setStatus(status, "This series has no instances.", "error");
        return;
      }
    }
    const index = viewer.instances.findIndex((ds) => first(ds, T.SOPInstanceUID) === instance);
    viewer.index = index >= 0 ? index : 0;
    viewer.frame = Math.min(Math.max(1, frame || 1), framesOf(viewer.instances[viewer.index]));
    renderViewer();
  }

  // The rendered resource of the current instance or frame (PS3.18 §10.4.1.1.3), as PNG: lossless,
  // so what a person sees is the window applied to the stored values, without JPEG artefacts.
  function imageUrl(accept = "image/png") {
    const ds = viewer.instances[viewer.index];
    const path = instancePath(viewer.study, viewer.series, first(ds, T.SOPInstanceUID));
    const url = framesOf(ds) > 1 ? `${path}/frames/${viewer.frame}/rendered` : `${path}/rendered`;
    const params = new URLSearchParams();
    if (accept) params.set("accept", accept); // PS3.18 §8.3.3.1: the accept query parameter
    if (viewer.window) params.set("window", `${viewer.window},linear`); // PS3.18 §8.3.5.1.4
    const query = params.toString().replaceAll("%2C", ",");
    return query ? `${url}?${query}` : url;
  }

  function renderViewer() {
    const ds = viewer.instances[viewer.index];
    const uid = first(ds, T.SOPInstanceUID);
    const frames = framesOf(ds);
    const instanceNumber = text(ds, T.InstanceNumber);
    history.replaceState(null, "", `#/view/${enc(viewer.study)}/${enc(viewer.series)}/${enc(uid)}/${viewer.frame}`);
    const seriesNumber = text(ds, T.SeriesNumber);
    const title = [seriesNumber && `Series ${seriesNumber}`, text(ds, T.SeriesDescription)].filter(Boolean).join(" · ");
    $("viewer-title").textContent = title || "Series";
    $("viewer-facts").replaceChildren(
      ...fact("Instance", instanceNumber),
      ...fact("Modality", text(ds, T.Modality)),
      ...fact("Size", ds[T.Rows] && `${text(ds, T.Columns)} × ${text(ds, T.Rows)}`),
      ...fact("Frames", frames > 1 ? String(frames) : ""),
    );
    $("instance-info").textContent = `${viewer.index + 1} / ${viewer.instances.length}`;
    $("prev-instance").disabled = viewer.index === 0;
    $("next-instance").disabled = viewer.index === viewer.instances.length - 1;
    $("frame-control").hidden = frames < 2;
    $("frame").max = String(frames);
    $("frame").value = String(viewer.frame);
    $("frame-info").textContent = `${viewer.frame} / ${frames}`;
    for (const button of $("presets").children) {
      button.setAttribute("aria-pressed", String((button.dataset.window || null) === viewer.window));
    }
    const image = $("image");
    const url = imageUrl();
    if (image.getAttribute("src") !== url) {
      setStatus($("viewer-status"), "Rendering…", "busy");
      image.setAttribute("alt", `Instance ${instanceNumber || viewer.index + 1}${frames > 1 ? `, frame ${viewer.frame}` : ""}`);
      image.setAttribute("src", url);
    }
  }

  function step(delta) {
    const next = viewer.index + delta;
    if (!viewer.instances.length || next < 0 || next >= viewer.instances.length) return;
    viewer.index = next;
    viewer.frame = 1;
    renderViewer();
  }

  function initViewer() {
    $("presets").replaceChildren(
      ...PRESETS.map(([label, preset]) => {
        const [center, width] = (preset || "").split(",");
        const title = preset ? `${label}: window center ${center}, width ${width}` : "The window the instance gives";
        const choose = () => {
          viewer.window = preset;
          if (viewer.instances.length) renderViewer();
        };
        return el("button", { type: "button", "data-window": preset || "", title, "aria-pressed": "false", onclick: choose }, label);
      }),
    );
    $("prev-instance").addEventListener("click", () => step(-1));
    $("next-instance").addEventListener("click", () => step(1));
    $("frame").addEventListener("input", (event) => {
      viewer.frame = Number(event.target.value);
      renderViewer();
    });
    const image = $("image");
    image.addEventListener("load", () => setStatus($("viewer-status"), ""));
    image.addEventListener("error", async () => {
      // An <img> does not say why: ask again for the server's message.
      const url = image.getAttribute("src");
      if (!url) return;
      let reason = "";
      try {
        const response = await fetch(url);
        reason = response.ok ? "" : `: ${await problem(response)}`;
      } catch (error) {
        reason = `: ${error.message}`;
      }
      if (image.getAttribute("src") !== url) return;
      // Documents (PDF, SR) render as something else than an image: offer the server's choice.
      $("viewer-status").replaceChildren(
        el("span", { className: "status error" }, `Could not show this instance as an image${reason}. `),
        el("a", { href: imageUrl(null), target: "_blank", rel: "noopener" }, "Open its rendered form"),
      );
    });
    document.addEventListener("keydown", (event) => {
      if ($("viewer-view").hidden || event.target.closest("input, textarea, select")) return;
      if (event.key === "ArrowLeft") step(-1);
      else if (event.key === "ArrowRight") step(1);
    });
  }

  // ---- upload (STOW-RS, PS3.18 §10.5) --------------------------------------------------------

  function upload(files) {
    files = [...files];
    if (!files.length) return;
    // A boundary that cannot plausibly occur in the files (RFC 2046 §5.1.1).
    const boundary = `dicomweb-kit-${[...crypto.getRandomValues(new Uint32Array(4))].map((n) => n.toString(36)).join("")}`;
    const parts = [];
    for (const file of files) parts.push(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, file, "\r\n");
    parts.push(`--${boundary}--\r\n`);
    const body = new Blob(parts); // the files are read by the browser as it sends, not here
    const bar = $("upload-bar");
    const result = $("upload-result");
    $("upload-progress").hidden = false;
    bar.value = 0;
    $("upload-percent").textContent = "0 %";
    result.replaceChildren(el("p", { className: "status busy" }, `Uploading ${files.length} file${files.length === 1 ? "" : "s"}…`));
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "studies");
    xhr.setRequestHeader("Content-Type", `multipart/related; type="application/dicom"; boundary=${boundary}`);
    xhr.setRequestHeader("Accept", DICOM_JSON);
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      bar.value = event.loaded / event.total;
      $("upload-percent").textContent = `${Math.round((100 * event.loaded) / event.total)} %`;
    });
    xhr.addEventListener("load", () => {
      bar.value = 1;
      $("upload-percent").textContent = "100 %";
      showStowResult(xhr, files.length);
      list.loaded = false;
      if (!$("list-view").hidden) loadStudies();
    });
    xhr.addEventListener("error", () => result.replaceChildren(el("p", { className: "status error" }, "The upload failed: no answer from the server.")));
    xhr.send(body);
  }

  // PS3.18 §10.5.3: 200 all stored, 202 some failed, 409 none stored; the body lists both.
  function showStowResult(xhr, count) {
    let ds = null;
    try {
      ds = JSON.parse(xhr.responseText);
    } catch {
      // 400, 413, 415: a plain-text message
    }
    const stored = values(ds, T.ReferencedSOPSequence);
    const failed = values(ds, T.FailedSOPSequence);
    const lines = [];
    const ok = xhr.status >= 200 && xhr.status < 300;
    if (!ds || typeof ds !== "object" || Array.isArray(ds)) {
      lines.push(el("p", { className: "status error" }, `The upload was refused (HTTP ${xhr.status}): ${xhr.responseText.trim().slice(0, 300)}`));
    } else {
      const kind = failed.length === 0 && ok ? "ok" : stored.length ? "warn" : "error";
      lines.push(
        el("p", { className: `status ${kind}` }, `Stored ${stored.length} of ${count} file${count === 1 ? "" : "s"}${failed.length ? `; ${failed.length} failed` : ""}.`),
      );
      const warnings = stored.filter((item) => first(item, T.WarningReason) !== undefined).length;
      if (warnings) lines.push(el("p", { className: "status warn" }, `${warnings} stored with a warning (coerced or changed attributes).`));
      if (failed.length) {
        lines.push(
          el(
            "ul",
            { className: "failures" },
            failed.map((item) => {
              const code = number(item, T.FailureReason);
              const reason = code === null ? "unknown reason" : `0x${code.toString(16).toUpperCase().padStart(4, "0")} ${FAILURE_REASONS[code] || ""}`;
              const uid = text(item, T.ReferencedSOPInstanceUID);
              return el("li", {}, el("code", {}, uid || "(no SOP Instance UID)"), ` — ${reason.trim()}`);
            }),
          ),
        );
      }
    }
    $("upload-result").replaceChildren(...lines);
  }

  function initUpload() {
    const zone = $("dropzone");
    const input = $("files");
    input.addEventListener("change", () => {
      upload(input.files);
      input.value = "";
    });
    // Dropped anywhere on the page: never let the browser navigate to the file.
    for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
    zone.addEventListener("dragover", () => zone.classList.add("over"));
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      zone.classList.remove("over");
      upload(event.dataTransfer.files);
    });
  }

  // ---- wiring --------------------------------------------------------------------------------

  function route() {
    const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] === "study" && parts.length === 2) showStudy(parts[1]);
    else if (parts[0] === "view" && parts.length >= 3) showViewer(parts[1], parts[2], parts[3], Number(parts[4]) || 1);
    else showList();
    $("main").focus({ preventScroll: true });
  }

  function init() {
    const form = $("search");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      list.params = searchParams(form);
      list.offset = 0;
      loadStudies();
    });
    form.addEventListener("reset", () => {
      list.params = new URLSearchParams();
      list.offset = 0;
      setTimeout(loadStudies);
    });
    $("prev").addEventListener("click", () => {
      list.offset = Math.max(0, list.offset - PAGE_SIZE);
      loadStudies();
    });
    $("next").addEventListener("click", () => {
      list.offset += PAGE_SIZE;
      loadStudies();
    });
    initViewer();
    initUpload();
    window.addEventListener("hashchange", route);
    route();
  }

  init();
})();
