/* DICOM upload with a progress bar (templates/dicom/_upload_form.html, form#dicom-upload-form), served at
 * /static/dicom_viewer/upload.js. Without JavaScript the form is a plain multipart post. With it, the
 * form goes by XMLHttpRequest (whose upload events give the progress), with the CSRF header and
 * Accept: application/json; the answer lists every file's outcome (stored, not DICOM, damaged,
 * duplicate), shown under the bar; then the section is reloaded to show the new studies.
 */
(function () {
  "use strict";
  if (window.cpmsDicomUpload) return;
  window.cpmsDicomUpload = true;

  function mb(bytes) {
    return (bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0) + " MB";
  }

  function table(results) {
    var t = document.createElement("table");
    t.className = "dicom-results";
    t.id = "dicom-results";
    var head = t.createTHead().insertRow();
    ["#", "File", "Outcome", "Detail"].forEach(function (h) {
      var th = document.createElement("th"); th.textContent = h; head.appendChild(th);
    });
    var body = t.createTBody();
    results.forEach(function (r, i) {
      var row = body.insertRow();
      row.className = "dicom-result-" + r.status;
      [String(i + 1), r.name || "", r.status_text || r.status, r.message || ""].forEach(function (v) {
        row.insertCell().textContent = v;
      });
    });
    return t;
  }

  // Capture phase: runs before htmx (the page is boosted) or the browser submits the form.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form || form.id !== "dicom-upload-form" || !window.FormData || !window.XMLHttpRequest) return;
    e.preventDefault();
    e.stopPropagation();
    var progress = form.querySelector("#dicom-upload-progress");
    var status = form.querySelector("#dicom-upload-status");
    var out = form.querySelector("#dicom-upload-results");
    var button = form.querySelector("button[type=submit]");
    var say = function (text) { if (status) status.textContent = text; };
    var data = new FormData(form);
    var token = data.get("_csrf_token") || "";
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("action"));
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("x-csrftoken", token);
    if (progress) { progress.hidden = false; progress.value = 0; progress.removeAttribute("data-done"); }
    if (out) out.textContent = "";
    if (button) button.disabled = true;
    xhr.upload.addEventListener("progress", function (ev) {
      if (!ev.lengthComputable) return say("Sending… " + mb(ev.loaded));
      var pct = Math.floor((ev.loaded / ev.total) * 100);
      if (progress) progress.value = pct;
      say("Sending… " + pct + " % (" + mb(ev.loaded) + " of " + mb(ev.total) + ")");
    });
    xhr.upload.addEventListener("load", function () {
      if (progress) progress.value = 100;
      say("Sent. De-identifying and storing…");
    });
    xhr.addEventListener("load", function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      if (button) button.disabled = false;
      if (body && body.results) {
        if (out) out.appendChild(table(body.results));
        if (xhr.status === 201) {
          if (progress) progress.setAttribute("data-done", "true");
          say("Stored " + body.stored + " image" + (body.stored === 1 ? "" : "s") + ", de-identified.");
          var section = document.getElementById("dicom-section");
          if (section && window.htmx) {
            // Show the new studies; the results stay visible on the upload page.
            window.htmx.ajax("GET", form.getAttribute("data-section"), { target: "#dicom-section", swap: "outerHTML" });
          }
        } else {
          say("Nothing was stored: no file of the upload was a new DICOM image.");
        }
        return;
      }
      if (progress) progress.hidden = true;
      say("Not stored: " + ((body && (body.detail || body.title)) || ("the server answered " + xhr.status)) + ".");
    });
    xhr.addEventListener("error", function () {
      if (button) button.disabled = false;
      if (progress) progress.hidden = true;
      say("Not stored: the connection was lost. Nothing was kept; try again.");
    });
    xhr.send(data);
  }, true);
})();
