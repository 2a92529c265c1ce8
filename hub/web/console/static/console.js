// crmhub console: the live stream. No inline script (the page's CSP allows none).
(function () {
  "use strict";
  if (!document.body.dataset.live) return;
  var lastId = Number(sessionStorage.getItem("crmhub.lastEventId") || 0);
  var badge = document.getElementById("live");
  var pops = document.getElementById("pops");
  var baseTitle = document.title;
  var delay = 1000;
  // A reload while a form is being sent would cancel the send's own answer.
  var submitting = false;
  document.addEventListener("submit", function () { submitting = true; });

  function status(on) {
    badge.textContent = on ? "live" : "offline";
    badge.className = on ? "live on" : "live";
  }

  function text(tag, value) {
    var el = document.createElement(tag);
    el.textContent = value; // never innerHTML: customer data is text
    return el;
  }

  function pop(frame) {
    var d = frame.data || {};
    var box = document.createElement("div");
    box.className = "pop";
    box.dataset.call = d.call_id || "";
    var caller = d.caller || {};
    box.appendChild(text("strong", caller.name || ("Call from " + (d.from || "unknown"))));
    if (caller.company) box.appendChild(text("div", caller.company));
    if (d.customer_id) {
      var a = text("a", "Open card");
      a.href = "/customers/" + d.customer_id;
      box.appendChild(a);
    }
    pops.appendChild(box);
    document.title = "☎ " + (caller.name || d.from || "call") + " · " + baseTitle;
  }

  function closePop(callId) {
    Array.prototype.forEach.call(pops.querySelectorAll(".pop"), function (el) {
      if (el.dataset.call === callId) el.remove();
    });
    document.title = baseTitle;
  }

  function onFrame(frame) {
    if (frame.id) {
      lastId = frame.id;
      sessionStorage.setItem("crmhub.lastEventId", String(lastId));
    }
    var d = frame.data || {};
    if (frame.kind === "call.ringing") pop(frame);
    else if (frame.kind === "call.answered" || frame.kind === "call.ended" || frame.kind === "call.missed") closePop(d.call_id);
    else if (frame.kind === "interaction.created" || frame.kind === "interaction.delivery") {
      var conv = document.querySelector("[data-conversation]");
      var timeline = document.getElementById("timeline");
      var here = (conv && Number(conv.dataset.conversation) === d.conversation_id) ||
        (timeline && location.pathname === "/customers/" + d.customer_id);
      if (here && !submitting) location.reload();
    }
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var url = scheme + location.host + "/api/v1/events" + (lastId ? "?last_event_id=" + lastId : "");
    var ws = new WebSocket(url);
    ws.onopen = function () { status(true); delay = 1000; };
    ws.onmessage = function (e) { try { onFrame(JSON.parse(e.data)); } catch (err) { /* ignore */ } };
    ws.onclose = function () {
      status(false);
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  var reply = document.querySelector("textarea[data-sms='1']");
  if (reply) {
    var out = document.getElementById("segments");
    reply.addEventListener("input", function () {
      var v = reply.value;
      var gsm = /^[\n\r\x20-\x7E£¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¡ÄÖÑÜ§¿äöñüà€]*$/.test(v);
      var single = gsm ? 160 : 70, multi = gsm ? 153 : 67;
      var n = v.length <= single ? 1 : Math.ceil(v.length / multi);
      out.textContent = v.length + " characters · " + n + " SMS" + (gsm ? "" : " (Unicode)");
    });
  }
  connect();
})();
