// The only hand-written JavaScript: show a toast for the HX-Trigger {"toast": "..."} header.
document.addEventListener("toast", (event) => {
  const box = document.createElement("div");
  box.className = "alert alert-success";
  box.setAttribute("role", "status");
  box.textContent = event.detail.value;
  document.getElementById("toasts").append(box);
  setTimeout(() => box.remove(), 3000);
});
