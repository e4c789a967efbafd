// The app's hand-written JavaScript (the CSP allows no inline script): toasts, failed requests
// with a Retry, and where keyboard focus goes after htmx swaps.
"use strict";

const MAX_TOASTS = 3;

// At most MAX_TOASTS at a time: the oldest fold away. The box sits at the bottom, clear of the navbar.
function showToast(box, ms) {
  const toasts = document.getElementById("toasts");
  toasts.append(box);
  while (toasts.children.length > MAX_TOASTS) toasts.firstElementChild.remove();
  if (ms) setTimeout(() => box.remove(), ms);
  return box;
}

// HX-Trigger {"toast": "..."}: a success note that goes by itself.
function toast(message) {
  const box = document.createElement("div");
  box.className = "alert alert-success";
  box.setAttribute("role", "status");
  box.textContent = message;
  showToast(box, 3000);
}
document.addEventListener("toast", (event) => toast(event.detail.value));

function errorToast(content, retry) {
  const box = document.createElement("div");
  box.className = "alert alert-error flex flex-wrap items-start gap-2";
  box.setAttribute("role", "alert");
  box.dataset.testid = "error-toast";
  const text = document.createElement("div");
  text.className = "flex-1 min-w-0";
  if (typeof content === "string") text.textContent = content;
  else text.append(content);
  box.append(text);
  if (retry) {
    const again = document.createElement("button");
    again.type = "button";
    again.className = "btn btn-sm";
    again.textContent = "Retry";
    again.addEventListener("click", () => { box.remove(); retry(); });
    box.append(again);
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "btn btn-sm btn-ghost";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "✕";
  close.addEventListener("click", () => box.remove());
  box.append(close);
  return showToast(box, 0);
}

// HX-Trigger {"toast-error": "..."}: something the user must read; stays until dismissed.
document.addEventListener("toast-error", (event) => errorToast(event.detail.value, null));

// Every htmx request passes htmx:confirm with a function that issues it again (same element,
// verb, path and trigger; the form's current values): kept per element for Retry.
const reissue = new WeakMap();
document.addEventListener("htmx:confirm", (event) => {
  reissue.set(event.detail.elt, event.detail.issueRequest);
});

function retryFor(elt) {
  const again = reissue.get(elt);
  return again ? () => again(true) : null;
}

// The server's own words for a 5xx (its error block: message and reference), else a summary.
function serverMessage(xhr) {
  const html = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
  const alert = html.getElementById("error-message");
  if (alert) {
    // One #error-message on the page: the newest (an older toast's copy loses the id).
    document.querySelectorAll("#toasts #error-message").forEach((old) => old.removeAttribute("id"));
    alert.className = "flex flex-col items-start gap-1";
    alert.removeAttribute("role");
    return document.adoptNode(alert);
  }
  return `The server could not handle that (HTTP ${xhr.status}). Your input is kept: try again.`;
}

// 5xx responses are not swapped (base.html's responseHandling): the form keeps its input.
document.addEventListener("htmx:responseError", (event) => {
  errorToast(serverMessage(event.detail.xhr), retryFor(event.detail.elt));
});
document.addEventListener("htmx:sendError", (event) => {
  errorToast("Could not reach the server: check your connection. Your input is kept.", retryFor(event.detail.elt));
});
document.addEventListener("htmx:timeout", (event) => {
  errorToast("The server took too long to answer. Your input is kept.", retryFor(event.detail.elt));
});

// ---- the items list: refresh after a change, and keyboard focus ----

function focusOn(el) {
  if (!el) return false;
  el.focus();
  return document.activeElement === el;
}

function cardFocusTarget(card) {
  return card && (card.querySelector("[data-edit]") || card.querySelector("a, button, input"));
}

// A delete (here or found out by a 404) changed the list: re-read it, so the count is right and
// the page refills from the next one. Focus then goes to the card that took the deleted one's place.
let focusIndex = null; // the position of the card the last request came from
let refillIndex = null; // that position, kept for the list's re-read
document.addEventListener("items-changed", () => {
  const list = document.getElementById("item-list");
  if (!list) return;
  refillIndex = focusIndex;
  htmx.ajax("GET", window.location.pathname + window.location.search, { target: "#item-list", swap: "outerHTML" });
});

document.addEventListener("htmx:beforeRequest", (event) => {
  const elt = event.detail.elt;
  const card = elt.closest && elt.closest("#item-list > [id^=item-]");
  // Remember where the card was, in case it goes away.
  focusIndex = card ? Array.from(card.parentElement.querySelectorAll(":scope > [id^=item-]")).indexOf(card) : null;
});

document.addEventListener("htmx:afterSettle", (event) => {
  const active = document.activeElement;
  if (active && active !== document.body && document.body.contains(active)) return;
  const invalid = document.querySelector('[aria-invalid="true"]');
  if (invalid && focusOn(invalid)) return;
  const created = document.querySelector("[data-created]");
  if (created && focusOn(cardFocusTarget(created))) { created.removeAttribute("data-created"); return; }
  const elt = event.detail.elt;
  const id = elt && elt.id;
  const card = id && /^item-\d+$/.test(id) ? document.getElementById(id) : null;
  if (card && focusOn(cardFocusTarget(card))) return;
  const list = document.getElementById("item-list");
  if (list && refillIndex !== null) {
    const cards = list.querySelectorAll(":scope > [id^=item-]");
    const index = refillIndex;
    refillIndex = null;
    if (cards.length && focusOn(cardFocusTarget(cards[Math.min(index, cards.length - 1)]))) return;
  }
  focusOn(document.getElementById("items-heading")) || focusOn(document.querySelector("main h1")) ||
    focusOn(document.getElementById("main"));
});

// Escape in an edit form cancels it (focus then returns to the card's Edit button).
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  const form = event.target.closest && event.target.closest("form[id^=item-]");
  const cancel = form && form.querySelector("[data-cancel]");
  if (cancel) {
    event.preventDefault();
    cancel.click();
  }
});

// "Add item" on a phone opens the form (#new-item, :target) and puts the cursor in Name.
document.addEventListener("click", (event) => {
  const opener = event.target.closest && event.target.closest("[data-open-create]");
  if (!opener) return;
  requestAnimationFrame(() => focusOn(document.querySelector("#create-form [name=name]")));
});

// ---- the log explorer ----

// Forms marked data-drop-empty (the log explorer's filters) leave empty fields out of the URL.
document.addEventListener("htmx:configRequest", (event) => {
  if (!event.detail.elt.matches || !event.detail.elt.matches("[data-drop-empty]")) return;
  const data = event.detail.formData;
  for (const name of new Set(data.keys())) {
    if (data.getAll(name).every((value) => typeof value === "string" && value.trim() === "")) data.delete(name);
  }
});

// The live tail (data-tail) does not poll while the tab is hidden.
document.addEventListener("htmx:beforeRequest", (event) => {
  if (document.hidden && event.detail.elt.matches && event.detail.elt.matches("[data-tail]")) event.preventDefault();
});

// data-copy="text": one click copies the text (trace ids in the log explorer).
document.addEventListener("click", async (event) => {
  const button = event.target.closest && event.target.closest("[data-copy]");
  if (!button) return;
  event.preventDefault();
  try {
    await navigator.clipboard.writeText(button.dataset.copy);
    toast("Copied " + button.dataset.copy);
  } catch {
    toast("Could not copy: select the id and copy it by hand.");
  }
});
