// The import page's upload bar: bytes sent of the total, from htmx's xhr progress events.
// When the whole file is sent, "import:uploaded" on the form starts the processing bar,
// which polls the server (views/import.html).
(() => {
  const MB = 1024 * 1024; // as the page's "up to 10 MB" counts
  let xhr = null;
  let uploaded = false;

  const megabytes = (bytes) => (bytes / MB).toFixed(1);

  function show(loaded, total) {
    const box = document.getElementById("import-upload");
    if (!box) return;
    const bar = box.querySelector("progress");
    const label = box.querySelector("[data-upload-label]");
    const percent = total > 0 ? Math.min(100, Math.floor((loaded / total) * 100)) : 0;
    bar.value = percent;
    bar.dataset.percent = String(percent);
    bar.dataset.loaded = String(loaded);
    label.textContent = loaded >= total
      ? `Uploaded ${megabytes(total)} MB`
      : `Uploading… ${percent}% (${megabytes(loaded)} of ${megabytes(total)} MB)`;
  }

  function sent(form) {
    if (uploaded) return;
    uploaded = true;
    htmx.trigger(form, "import:uploaded");
  }

  document.addEventListener("htmx:beforeSend", (event) => {
    const form = event.detail.elt;
    if (form.id !== "import-form") return;
    xhr = event.detail.xhr;
    uploaded = false;
    const box = document.getElementById("import-upload");
    if (box) box.hidden = false;
  });

  // htmx reports the request body's progress and the response's under the same event names;
  // while the request is still being sent, no response header has arrived (readyState OPENED).
  document.addEventListener("htmx:xhr:progress", (event) => {
    const form = event.target;
    if (form.id !== "import-form" || xhr === null) return;
    if (xhr.readyState !== XMLHttpRequest.OPENED) return sent(form);
    const { loaded, total, lengthComputable } = event.detail;
    if (lengthComputable) show(loaded, total);
    if (lengthComputable && loaded >= total) sent(form);
  });

  document.addEventListener("htmx:xhr:loadend", (event) => {
    if (event.target.id === "import-form" && xhr !== null) sent(event.target);
  });
})();
