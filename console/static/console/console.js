// Behaviour the pages ask for with data attributes: the Content-Security-Policy allows no
// inline handlers.
document.addEventListener("click", (event) => {
  const copy = event.target.closest("[data-copy-from]");
  if (copy) {
    const source = document.getElementById(copy.dataset.copyFrom);
    navigator.clipboard.writeText(source.textContent);
    return;
  }
  const all = event.target.closest("[data-select-all]");
  if (all) {
    document.querySelectorAll(`input[name="${all.dataset.selectAll}"]`).forEach((box) => {
      box.checked = all.checked;
    });
  }
});
