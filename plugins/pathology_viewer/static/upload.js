/* Slide upload with a progress bar (templates/pathology/_upload_form.html, form#slide-upload-form),
 * served at /static/pathology_viewer/upload.js. Without JavaScript the form is a plain multipart post.
 * With it, the form goes by XMLHttpRequest (whose upload events give the progress), with the CSRF
 * header and Accept: application/json: 201 {url} opens the new slide, a problem (4xx) is shown above
 * the button and nothing was stored. Whole-slide images are large: the bar shows bytes sent, then
 * "checking" while the server opens the file with OpenSlide.
 */
(function () {
  "use strict";
  if (window.cpmsSlideUpload) return;
  window.cpmsSlideUpload = true;

  function mb(bytes) {
    return (bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0) + " MB";
  }

  // Capture phase: runs before htmx (the page is boosted) or the browser submit the form.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form || form.id !== "slide-upload-form" || !window.FormData || !window.XMLHttpRequest) return;
    e.preventDefault();
    e.stopPropagation();
    var progress = form.querySelector("#slide-upload-progress");
    var status = form.querySelector("#slide-upload-status");
    var button = form.querySelector("button[type=submit]");
    var say = function (text) { if (status) status.textContent = text; };
    var data = new FormData(form);
    var token = data.get("_csrf_token") || "";
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.getAttribute("action"));
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("x-csrftoken", token);
    if (progress) { progress.hidden = false; progress.value = 0; progress.removeAttribute("data-done"); }
    if (button) button.disabled = true;
    xhr.upload.addEventListener("progress", function (ev) {
      if (!ev.lengthComputable) return say("Sending… " + mb(ev.loaded));
      var pct = Math.floor((ev.loaded / ev.total) * 100);
      if (progress) progress.value = pct;
      say("Sending… " + pct + " % (" + mb(ev.loaded) + " of " + mb(ev.total) + ")");
    });
    xhr.upload.addEventListener("load", function () {
      if (progress) progress.value = 100;
      say("Sent. Checking the slide (opening it with OpenSlide)…");
    });
    xhr.addEventListener("load", function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      if (xhr.status === 201 && body && body.url) {
        if (progress) progress.setAttribute("data-done", "true");
        say("Stored. Opening the slide…");
        window.location.assign(body.url);
        return;
      }
      if (button) button.disabled = false;
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
