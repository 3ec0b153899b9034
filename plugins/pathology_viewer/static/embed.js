/* CPMS slide embed snippet, served at /static/pathology_viewer/embed.js.
 *
 * In any web page:
 *   <div data-cpms-slide="https://cpms.example.org/pathology/embed/TOKEN" data-height="600"></div>
 *   <script src="https://cpms.example.org/static/pathology_viewer/embed.js"></script>
 *
 * Each such element gets an iframe showing the shared slide (full width, data-height pixels high,
 * 480 by default). Only share-link pages of the site this script comes from are framed, so the
 * snippet cannot be used to frame anything else. Elements added later: call
 * window.CPMSSlides.scan().
 */
(function () {
  "use strict";
  var script = document.currentScript;
  var origin = script && script.src ? new URL(script.src, window.location.href).origin : window.location.origin;

  function frame(el) {
    if (el.getAttribute("data-cpms-embedded")) return;
    var url;
    try {
      url = new URL(el.getAttribute("data-cpms-slide"), origin);
    } catch (err) {
      return;
    }
    if (url.origin !== origin || !/^\/pathology\/embed\/[A-Za-z0-9._-]+$/.test(url.pathname)) {
      if (window.console) window.console.warn("CPMS embed: not a share link of " + origin + ":", el.getAttribute("data-cpms-slide"));
      return;
    }
    var height = parseInt(el.getAttribute("data-height") || "480", 10);
    var iframe = document.createElement("iframe");
    iframe.src = url.href;
    iframe.title = el.getAttribute("data-title") || "Whole-slide image (CPMS)";
    iframe.setAttribute("allowfullscreen", "");
    iframe.setAttribute("allow", "fullscreen");
    iframe.setAttribute("referrerpolicy", "no-referrer");
    iframe.style.width = "100%";
    iframe.style.height = (height > 0 && height < 5000 ? height : 480) + "px";
    iframe.style.border = "0";
    iframe.style.display = "block";
    el.setAttribute("data-cpms-embedded", "true");
    el.appendChild(iframe);
  }

  function scan() {
    var els = document.querySelectorAll("[data-cpms-slide]");
    for (var i = 0; i < els.length; i++) frame(els[i]);
  }

  window.CPMSSlides = { scan: scan };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
})();
