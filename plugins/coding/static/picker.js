/* Code picker (templates/coding/_picker.html), served at /static/coding/picker.js: keyboard and
 * mouse for the ARIA 1.2 combobox whose options htmx loads from /coding/search. One set of
 * listeners on the document serves every picker on the page, including pickers htmx swaps in
 * later; every picker includes this file, so it initialises once. */
(function () {
  "use strict";
  if (window.cpmsCodePicker) return;
  window.cpmsCodePicker = true;

  function rootOf(el) {
    return el && el.closest ? el.closest("[data-code-picker]") : null;
  }

  function parts(root) {
    return {
      root: root,
      input: root.querySelector("input[role=combobox]"),
      list: root.querySelector("[role=listbox]"),
      status: root.querySelector("[data-cp-status]"),
      system: root.querySelector("input[data-cp-system]"),
      code: root.querySelector("input[data-cp-code]"),
      picked: root.querySelector("[data-cp-picked]"),
      pickedText: root.querySelector("[data-cp-picked-text]"),
      clear: root.querySelector("[data-cp-clear]"),
      equivalents: root.querySelector("[data-cp-equivalents]"),
    };
  }

  function options(p) {
    return Array.prototype.slice.call(p.list.querySelectorAll("[role=option]:not([aria-disabled=true])"));
  }

  function isOpen(p) {
    return p.input.getAttribute("aria-expanded") === "true";
  }

  function active(p) {
    var id = p.input.getAttribute("aria-activedescendant");
    return id ? document.getElementById(id) : null;
  }

  function setActive(p, option) {
    options(p).forEach(function (o) {
      o.setAttribute("aria-selected", o === option ? "true" : "false");
    });
    if (option) {
      p.input.setAttribute("aria-activedescendant", option.id);
      option.scrollIntoView({ block: "nearest" });
    } else {
      p.input.removeAttribute("aria-activedescendant");
    }
  }

  function open(p) {
    if (!p.list.children.length) return close(p);
    p.list.hidden = false;
    p.input.setAttribute("aria-expanded", "true");
  }

  function close(p) {
    setActive(p, null);
    p.list.hidden = true;
    p.input.setAttribute("aria-expanded", "false");
  }

  function announce(p, text) {
    if (p.status) p.status.textContent = text;
  }

  function pick(p, option) {
    var system = option.getAttribute("data-system");
    var code = option.getAttribute("data-code");
    var display = option.getAttribute("data-display");
    p.input.value = display;
    p.system.value = system;
    p.code.value = code;
    p.root.setAttribute("data-picked-label", display);
    p.pickedText.textContent = system + ":" + code;
    p.clear.setAttribute("aria-label", "Remove the code " + system + ":" + code);
    p.picked.hidden = false;
    close(p);
    p.list.innerHTML = "";
    announce(p, "Picked " + system + ":" + code + ", " + display + ".");
    p.equivalents.innerHTML = "";
    if (window.htmx) {
      var query = new URLSearchParams({ system: system, code: code, prefix: p.root.getAttribute("data-prefix") || "" });
      window.htmx.ajax("GET", "/coding/equivalents?" + query.toString(), { target: p.equivalents, swap: "innerHTML" });
    }
  }

  function unpick(p) {
    p.system.value = "";
    p.code.value = "";
    p.root.removeAttribute("data-picked-label");
    p.pickedText.textContent = "";
    p.clear.setAttribute("aria-label", "Remove the code");
    p.picked.hidden = true;
    // The equivalents belong to the code that was picked.
    p.equivalents.innerHTML = "";
  }

  document.addEventListener("keydown", function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || input.getAttribute("role") !== "combobox") return;
    var root = rootOf(input);
    if (!root) return;
    var p = parts(root);
    var list = options(p);
    var current = active(p);
    var index = current ? list.indexOf(current) : -1;
    switch (event.key) {
      case "ArrowDown":
        if (!list.length) return;
        event.preventDefault();
        open(p);
        if (!event.altKey) setActive(p, list[(index + 1) % list.length]);
        break;
      case "ArrowUp":
        if (!list.length) return;
        event.preventDefault();
        open(p);
        setActive(p, list[index <= 0 ? list.length - 1 : index - 1]);
        break;
      case "Home":
      case "End":
        // Only while an option is active; otherwise the keys move the caret in the text.
        if (!isOpen(p) || !current) return;
        event.preventDefault();
        setActive(p, event.key === "Home" ? list[0] : list[list.length - 1]);
        break;
      case "Enter":
        // On an open list Enter picks (or just closes the list); it never submits the form then.
        if (!isOpen(p)) return;
        event.preventDefault();
        if (current) pick(p, current);
        else close(p);
        break;
      case "Escape":
        if (!isOpen(p)) return;
        event.preventDefault();
        close(p);
        break;
      case "Tab":
        // Leaving with an option chosen by the arrows keeps it (as a blur would); focus moves on.
        if (isOpen(p) && current) pick(p, current);
        else if (isOpen(p)) close(p);
        break;
    }
  });

  document.addEventListener("input", function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement) || input.getAttribute("role") !== "combobox") return;
    var root = rootOf(input);
    if (!root) return;
    var p = parts(root);
    // Typing after a pick turns the entry back into free text until a code is picked again.
    if (root.hasAttribute("data-picked-label") && input.value !== root.getAttribute("data-picked-label")) unpick(p);
    if (!input.value.trim()) {
      close(p);
      p.list.innerHTML = "";
      announce(p, "");
    }
  });

  // Keep the focus in the text box while an option (or the list's scroll bar) is clicked.
  document.addEventListener("mousedown", function (event) {
    var list = event.target.closest && event.target.closest("[data-code-picker] [role=listbox]");
    if (list) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.closest) return;
    var option = target.closest("[data-code-picker] [role=option]");
    if (option) {
      if (option.getAttribute("aria-disabled") === "true") return;
      pick(parts(rootOf(option)), option);
      return;
    }
    var clear = target.closest("[data-code-picker] [data-cp-clear]");
    if (clear) {
      var p = parts(rootOf(clear));
      unpick(p);
      p.input.value = "";
      announce(p, "Code removed.");
      p.input.focus();
    }
  });

  document.addEventListener("focusout", function (event) {
    var root = rootOf(event.target);
    if (!root) return;
    window.setTimeout(function () {
      if (!root.contains(document.activeElement)) close(parts(root));
    }, 0);
  });

  // A list of options arrived: show it while the user is still in that box and has not picked since.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (!target || target.getAttribute("role") !== "listbox") return;
    var root = rootOf(target);
    if (!root) return;
    var p = parts(root);
    if (root.hasAttribute("data-picked-label") && p.input.value === root.getAttribute("data-picked-label")) {
      event.detail.shouldSwap = false; // a search sent just before the pick
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (!target) return;
    var root = rootOf(target);
    if (!root) return;
    var p = parts(root);
    if (target === p.list) {
      setActive(p, null);
      if (document.activeElement === p.input && p.input.value.trim() && p.list.children.length) open(p);
      else close(p);
    } else if (target === p.equivalents) {
      var boxes = p.equivalents.querySelectorAll("input[type=checkbox]");
      var ticked = p.equivalents.querySelectorAll("input[type=checkbox]:checked");
      if (boxes.length) {
        var picked = p.code.value ? "Picked " + p.system.value + ":" + p.code.value + ". " : "";
        announce(p, picked + boxes.length + " code" + (boxes.length === 1 ? "" : "s") + " of other systems suggested, " + ticked.length + " ticked.");
      }
    }
  });
})();
