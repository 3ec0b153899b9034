// Passkeys (WebAuthn): the browser side of core/identity/passkeys.py. The server makes the options
// and checks the answers; this only turns base64url into bytes and back around the WebAuthn API.
(function () {
  "use strict";
  const b64 = {
    toBytes(text) {
      const pad = "=".repeat((4 - (text.length % 4)) % 4);
      const raw = atob((text + pad).replace(/-/g, "+").replace(/_/g, "/"));
      return Uint8Array.from(raw, (c) => c.charCodeAt(0)).buffer;
    },
    fromBytes(buffer) {
      let raw = "";
      new Uint8Array(buffer).forEach((b) => { raw += String.fromCharCode(b); });
      return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    },
  };
  const csrf = () => (document.cookie.match(/(?:^|; )csrftoken=([^;]+)/) || [])[1] || "";
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrftoken": decodeURIComponent(csrf()) },
      body: body === undefined ? "{}" : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.detail || "The passkey was refused.");
    return data;
  }
  const ids = (list) => (list || []).map((c) => ({ ...c, id: b64.toBytes(c.id) }));
  function answer(credential) {
    const r = credential.response;
    const out = { id: credential.id, rawId: b64.fromBytes(credential.rawId), type: credential.type, response: {
      clientDataJSON: b64.fromBytes(r.clientDataJSON) } };
    if (r.attestationObject) {
      out.response.attestationObject = b64.fromBytes(r.attestationObject);
      if (r.getTransports) out.response.transports = r.getTransports();
    } else {
      out.response.authenticatorData = b64.fromBytes(r.authenticatorData);
      out.response.signature = b64.fromBytes(r.signature);
      if (r.userHandle) out.response.userHandle = b64.fromBytes(r.userHandle);
    }
    return out;
  }
  function report(root, error) {
    const slot = root.querySelector("[data-passkey-error]") || root.parentElement.querySelector("[data-passkey-error]");
    if (slot) slot.textContent = error.name === "NotAllowedError" ? "Cancelled, or no passkey was offered." : error.message;
  }

  const register = document.querySelector("form[data-passkey-register]");
  if (register) {
    register.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const options = await post("/account/passkeys/options");
        options.challenge = b64.toBytes(options.challenge);
        options.user.id = b64.toBytes(options.user.id);
        options.excludeCredentials = ids(options.excludeCredentials);
        const credential = await navigator.credentials.create({ publicKey: options });
        await post("/account/passkeys", { name: register.elements.name.value, credential: answer(credential) });
        window.location.assign("/profile#passkeys");
        window.location.reload();
      } catch (error) { report(register, error); }
    });
  }

  const login = document.querySelector("[data-passkey-login]");
  if (login) {
    login.addEventListener("click", async () => {
      try {
        const options = await post("/login/2fa/passkey/options");
        options.challenge = b64.toBytes(options.challenge);
        options.allowCredentials = ids(options.allowCredentials);
        const credential = await navigator.credentials.get({ publicKey: options });
        const done = await post("/login/2fa/passkey", { next: login.dataset.next || "/", credential: answer(credential) });
        window.location.assign(done.next || "/");
      } catch (error) { report(login, error); }
    });
  }
})();
