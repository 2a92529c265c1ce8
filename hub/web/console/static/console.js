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

  var myId = Number(document.body.dataset.userId || 0);
  var alerts = {}; // call id -> desktop Notification

  function csrf() {
    var field = document.querySelector("input[name='csrf']");
    return field ? field.value : "";
  }

  function list(title, items, line) {
    var box = document.createElement("div");
    box.appendChild(text("h3", title));
    var ul = document.createElement("ul");
    items.forEach(function (item) { ul.appendChild(line(item)); });
    box.appendChild(ul);
    return box;
  }

  function link(label, href) {
    var a = text("a", label);
    a.href = href;
    return a;
  }

  function createForm(number) {
    // The unknown caller's number becomes a customer; the server answers with the card.
    var form = document.createElement("form");
    form.method = "post";
    form.action = "/customers/new";
    [["csrf", csrf()], ["phone", number]].forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = pair[0];
      input.value = pair[1];
      form.appendChild(input);
    });
    var button = text("button", "Create customer");
    button.type = "submit";
    form.appendChild(button);
    return form;
  }

  function pop(frame) {
    var d = frame.data || {};
    var card = d.caller || {};
    var who = card.customer || {};
    closePop(d.call_id, true);
    var box = document.createElement("section");
    box.className = "pop";
    box.dataset.call = d.call_id || "";
    box.setAttribute("aria-label", "Incoming call");
    var close = text("button", "×");
    close.className = "dismiss";
    close.setAttribute("aria-label", "Dismiss");
    close.addEventListener("click", function () { closePop(d.call_id); });
    box.appendChild(close);
    var number = card.international || card.phone || d.from || "";
    var title;
    if (card.status === "known") {
      title = who.name || number;
      box.appendChild(text("strong", title)).className = "pop-name";
      if (who.company) box.appendChild(text("div", who.company));
      box.appendChild(text("div", number)).className = "muted";
      if (who.tags && who.tags.length) {
        var tags = document.createElement("p");
        who.tags.forEach(function (t) { tags.appendChild(text("span", t)).className = "tag"; });
        box.appendChild(tags);
      }
      if (who.owner) box.appendChild(text("div", "Owner: " + (who.owner.display_name || who.owner.username)));
      if ((card.open_conversations || []).length) {
        box.appendChild(list("Open conversations", card.open_conversations.slice(0, 3), function (c) {
          var li = document.createElement("li");
          li.appendChild(link(c.subject || c.channel, "/conversations/" + c.id));
          return li;
        }));
      }
      if ((card.recent_interactions || []).length) {
        box.appendChild(list("Last contacts", card.recent_interactions, function (i) {
          var when = (i.occurred_at || "").slice(0, 16).replace("T", " ");
          var what = i.subject || (i.text || "").slice(0, 60);
          return text("li", when + " · " + i.channel + " " + (i.direction === "in" ? "in" : "out") + (what ? " · " + what : ""));
        }));
      }
      if ((card.open_tasks || []).length) {
        box.appendChild(list("Open tasks", card.open_tasks, function (t) {
          return text("li", t.title + (t.due_at ? " · due " + t.due_at.slice(0, 10) : ""));
        }));
      }
      if (who.id) box.appendChild(link("Open card", "/customers/" + who.id));
    } else if (card.status === "other_team") {
      title = (who.name || number);
      box.appendChild(text("strong", title)).className = "pop-name";
      box.appendChild(text("div", "Customer of team " + ((card.team || {}).name || "?")));
    } else {
      title = "Unknown caller";
      box.appendChild(text("strong", title)).className = "pop-name";
      box.appendChild(text("div", number + (card.country ? " · " + card.country : "")));
      if (card.phone && /^\+\d+$/.test(card.phone)) box.appendChild(createForm(card.phone));
    }
    pops.appendChild(box);
    document.title = "☎ " + title + " · " + baseTitle;
    if (window.Notification && Notification.permission === "granted") {
      try {
        alerts[d.call_id] = new Notification("Call: " + title, { body: who.company || number, tag: d.call_id });
      } catch (err) { /* some browsers allow notifications only from a service worker */ }
    }
  }

  function closePop(callId, quiet) {
    Array.prototype.forEach.call(pops.querySelectorAll(".pop"), function (el) {
      if (el.dataset.call === callId) el.remove();
    });
    if (alerts[callId]) { alerts[callId].close(); delete alerts[callId]; }
    if (!quiet && !pops.querySelector(".pop")) document.title = baseTitle;
  }

  function answered(d) {
    if (myId && d.answered_user_id === myId) {
      // The agent who took the call: the pop becomes the customer's card.
      var box = pops.querySelector(".pop[data-call='" + CSS.escape(d.call_id || "") + "']");
      if (box) box.classList.add("taken");
      var target = d.customer_id ? "/customers/" + d.customer_id : null;
      if (target && location.pathname !== target && !submitting) {
        closePop(d.call_id);
        location.assign(target);
        return;
      }
      if (box) return; // an unknown caller stays open with its "create customer" button
    }
    closePop(d.call_id);
  }

  var notify = document.getElementById("notify");
  if (notify && window.Notification && Notification.permission === "default") {
    notify.hidden = false;
    notify.addEventListener("click", function () {
      Notification.requestPermission().then(function () { notify.hidden = true; });
    });
  }

  function onFrame(frame) {
    if (frame.id) {
      lastId = frame.id;
      sessionStorage.setItem("crmhub.lastEventId", String(lastId));
    }
    var d = frame.data || {};
    if (frame.kind === "call.ringing") pop(frame);
    else if (frame.kind === "call.answered") answered(d);
    else if (frame.kind === "call.ended" || frame.kind === "call.missed") {
      var mine = pops.querySelector(".pop.taken[data-call='" + CSS.escape(d.call_id || "") + "']");
      if (!mine) closePop(d.call_id);
    }
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
