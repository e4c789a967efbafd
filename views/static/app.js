// The only hand-written JavaScript (the CSP allows no inline scripts).

// A toast for the HX-Trigger {"toast": "..."} header.
function toast(message) {
  const box = document.createElement("div");
  box.className = "alert alert-success";
  box.setAttribute("role", "status");
  box.textContent = message;
  document.getElementById("toasts").append(box);
  setTimeout(() => box.remove(), 3000);
}
document.addEventListener("toast", (event) => toast(event.detail.value));

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
