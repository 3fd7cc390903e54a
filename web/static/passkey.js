// Passkey ceremonies for the sign-in and account pages: the provider's own
// script, the only one its pages load (CSP script-src 'self').
//
// A form with data-passkey="get" (sign in) or "create" (add a passkey)
// stays hidden until this script shows it, so a browser without
// JavaScript never sees a button that cannot work. Its button
// [data-passkey-start] fetches the ceremony's options from the form's
// data-options URL (posting the form's fields: the CSRF token, and for
// "create" the password and name), asks the browser for the credential,
// puts the browser's answer in the form's "credential" field and submits
// the form: the server answers with a page, as for any form.
// data-conditional on a "get" form also starts the autofill's quiet
// request on load, so the username field (autocomplete="username
// webauthn") lists the site's passkeys.
(function () {
  "use strict";

  var supported = typeof window.PublicKeyCredential === "function" &&
    navigator.credentials && typeof navigator.credentials.get === "function";

  function b64urlToBuffer(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function bufferToB64url(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // decodeOptions turns the server's JSON (binary fields base64url) into
  // what navigator.credentials expects.
  function decodeOptions(o) {
    var pk = o.publicKey;
    pk.challenge = b64urlToBuffer(pk.challenge);
    if (pk.user && typeof pk.user.id === "string") pk.user.id = b64urlToBuffer(pk.user.id);
    ["excludeCredentials", "allowCredentials"].forEach(function (k) {
      (pk[k] || []).forEach(function (d) { d.id = b64urlToBuffer(d.id); });
    });
    return o;
  }

  // encodeCredential is the PublicKeyCredential as the JSON the server reads.
  function encodeCredential(c) {
    var r = c.response, out = {
      id: c.id, rawId: bufferToB64url(c.rawId), type: c.type,
      authenticatorAttachment: c.authenticatorAttachment || undefined,
      clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
      response: { clientDataJSON: bufferToB64url(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = bufferToB64url(r.attestationObject);
      out.response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      out.response.authenticatorData = bufferToB64url(r.authenticatorData);
      out.response.signature = bufferToB64url(r.signature);
      if (r.userHandle) out.response.userHandle = bufferToB64url(r.userHandle);
    }
    return JSON.stringify(out);
  }

  // explain says what went wrong in words that say what to do next.
  function explain(err, kind, elapsed, timeout) {
    switch (err && err.name) {
      case "NotAllowedError":
        if (timeout && elapsed >= timeout * 0.95) return "The passkey request timed out. Try again when your authenticator is at hand.";
        return kind === "create"
          ? "Adding the passkey was cancelled (or your authenticator refused). Nothing was changed; try again when you are ready."
          : "The passkey request was cancelled, or no passkey for this site was chosen. Try again, or use another way to sign in.";
      case "InvalidStateError":
        return "This authenticator already holds a passkey for your account. Use another authenticator, or rename the one you have.";
      case "SecurityError":
        return "Passkeys do not work at this address. Open the page at its usual address and try again.";
      case "NotSupportedError":
        return "Your authenticator does not support the kind of key this site needs.";
      case "ServerError":
        return err.message;
    }
    return "The passkey request failed" + (err && err.message ? " (" + err.message + ")" : "") + ". Try again.";
  }

  function setError(form, msg) {
    var el = form.querySelector("[data-passkey-error]");
    if (!el) return;
    el.textContent = msg || "";
    el.hidden = !msg;
  }

  function fetchOptions(form, conditional) {
    var body = new URLSearchParams();
    new FormData(form).forEach(function (v, k) { if (k !== "credential") body.append(k, v); });
    if (conditional) body.set("mediation", "conditional");
    return fetch(form.dataset.options, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        if (!resp.ok || !data.publicKey) {
          var e = new Error(data.error || "The page is out of date. Reload it and try again.");
          e.name = "ServerError";
          throw e;
        }
        return data;
      });
    });
  }

  function ceremony(form, conditional, signal) {
    var kind = form.dataset.passkey;
    var started = Date.now(), timeout = 0;
    return fetchOptions(form, conditional).then(function (data) {
      var opts = decodeOptions(data);
      timeout = opts.publicKey.timeout || 0;
      opts.signal = signal;
      return kind === "create" ? navigator.credentials.create(opts) : navigator.credentials.get(opts);
    }).then(function (cred) {
      if (!cred) throw Object.assign(new Error(""), { name: "NotAllowedError" });
      form.elements.credential.value = encodeCredential(cred);
      // Fields that mirror another form's (the sign-in page's "keep me
      // signed in" box) take its value now.
      Array.prototype.forEach.call(form.querySelectorAll("[data-copy-checkbox]"), function (el) {
        var box = document.getElementById(el.dataset.copyCheckbox);
        el.value = box && box.checked ? "1" : "";
      });
      // The password was checked when the options were issued: it need
      // not travel again.
      Array.prototype.forEach.call(form.querySelectorAll("input[type=password]"), function (p) { p.value = ""; });
      form.submit();
    }, function (err) {
      if (err && err.name === "AbortError") return; // we stopped it ourselves
      if (conditional && err && err.name === "NotAllowedError") return; // the autofill's request ended quietly
      throw Object.assign(err || new Error(""), { passkeyMessage: explain(err, kind, Date.now() - started, timeout) });
    });
  }

  function setUp(form) {
    var button = form.querySelector("[data-passkey-start]");
    var pending = null; // the autofill's request, while it waits

    function conditional() {
      if (!("conditional" in form.dataset) || !PublicKeyCredential.isConditionalMediationAvailable) return;
      PublicKeyCredential.isConditionalMediationAvailable().then(function (ok) {
        if (!ok) return;
        var ctl = new AbortController();
        pending = ctl;
        // The challenge lives five minutes: ask for a fresh one before.
        var renew = setTimeout(function () { ctl.abort(); conditional(); }, 4 * 60 * 1000);
        ceremony(form, true, ctl.signal).catch(function (err) {
          setError(form, err.passkeyMessage);
        }).finally(function () { clearTimeout(renew); });
      });
    }

    button.addEventListener("click", function () {
      if (pending) { pending.abort(); pending = null; }
      if (form.dataset.requireValid !== undefined && !form.reportValidity()) return;
      setError(form, "");
      button.disabled = true;
      ceremony(form, false, undefined).catch(function (err) {
        setError(form, err.passkeyMessage || explain(err, form.dataset.passkey));
        conditional();
      }).finally(function () { button.disabled = false; });
    });
    form.hidden = false;
    conditional();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var forms = document.querySelectorAll("form[data-passkey]");
    if (!supported) {
      Array.prototype.forEach.call(document.querySelectorAll("[data-passkey-unsupported]"), function (el) { el.hidden = false; });
      return;
    }
    Array.prototype.forEach.call(forms, setUp);
  });
})();
